"""Post-processing shared by all detectors: score threshold, top-k, class-aware rotated NMS; or the
IoU-aware redundancy elimination of the compression stage when the config asks for it."""
from __future__ import annotations

import torch

from clean_deploy.geometry.nms import nms_rotated_multiclass
from clean_deploy.models.config import PostProcessConfig
from clean_deploy.models.redundancy import redundancy_elimination


@torch.no_grad()
def postprocess(decoded: dict, cfg: PostProcessConfig) -> list[dict]:
    """Decoded candidates (boxes (N,K,7), scores (N,K), labels (N,K), optional iou/valid) ->
    per frame ``{"boxes": (D,7), "scores": (D,), "labels": (D,) 0-based, "iou": (D,)|None}``."""
    if cfg.redundancy is not None:
        return redundancy_elimination(decoded, cfg.redundancy)
    boxes, scores, labels = decoded["boxes"], decoded["scores"], decoded["labels"]
    iou, valid = decoded.get("iou"), decoded.get("valid")
    results = []
    for b in range(boxes.shape[0]):
        keep = scores[b] >= cfg.score_thresh
        if valid is not None:
            keep &= valid[b]
        idx = keep.nonzero(as_tuple=True)[0]
        s = scores[b, idx]
        if len(idx) > cfg.nms_pre_max:
            top = s.topk(cfg.nms_pre_max).indices
            idx, s = idx[top], s[top]
        bx, lb = boxes[b, idx, :7], labels[b, idx]
        sel = nms_rotated_multiclass(bx, s, lb, cfg.nms_thresh, post_max=cfg.nms_post_max)
        res = {"boxes": bx[sel], "scores": s[sel], "labels": lb[sel],
               "iou": iou[b, idx][sel] if iou is not None else None}
        results.append(res)
    return results
