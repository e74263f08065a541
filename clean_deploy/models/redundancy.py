"""IoU-aware redundancy elimination (CLEAN): rescore each candidate with its predicted IoU
(``score^(1-b) * iou^b``, per-class ``b``), drop low-quality candidates, then quality-ordered rotated
NMS with class-aware thresholds plus cross-class suppression of boxes that explain the same object.

Static shapes: at most ``pre_max`` candidates enter and ``max_output`` boxes leave per frame
(zero-padded, with a valid count), so the whole step becomes one export node
(``clean_deploy::IoUAwareRedundancyElimination``) whose C++ kernel runs the same algorithm.
"""
from __future__ import annotations

import torch

from clean_deploy.geometry.nms import nms_rotated_ordered
from clean_deploy.models.config import RedundancyConfig
from clean_deploy.models.heads.iou_quality import rescore

__all__ = ["RedundancyConfig", "eliminate_frame", "redundancy_elimination"]


def eliminate_frame(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                    iou: torch.Tensor | None, cfg: RedundancyConfig) -> dict:
    """One frame: candidates (K,7)/(K,)/(K,)/(K,)|None -> fixed-size outputs.

    Returns boxes (M,7), scores (M,), labels (M,) (int64, -1 padding), valid (int)."""
    m = cfg.max_output
    out_boxes = boxes.new_zeros(m, 7)
    out_scores = scores.new_zeros(m)
    out_labels = torch.full((m,), -1, dtype=torch.long, device=boxes.device)
    q = rescore(scores, iou, labels, cfg.beta) if iou is not None else scores
    keep = q >= cfg.score_thresh
    if iou is not None:
        min_iou = torch.as_tensor(cfg.min_iou, dtype=iou.dtype, device=iou.device)[labels]
        keep &= iou >= min_iou
    idx = keep.nonzero(as_tuple=True)[0]
    if len(idx) == 0:
        return {"boxes": out_boxes, "scores": out_scores, "labels": out_labels, "valid": 0}
    order = q[idx].argsort(descending=True, stable=True)[: cfg.pre_max]
    idx = idx[order]
    alive = nms_rotated_ordered(boxes[idx, :7], labels[idx], list(cfg.nms_thresh), cfg.cross_class_thresh)
    sel = idx[alive][:m]
    n = len(sel)
    out_boxes[:n] = boxes[sel, :7]
    out_scores[:n] = q[sel]
    out_labels[:n] = labels[sel]
    return {"boxes": out_boxes, "scores": out_scores, "labels": out_labels, "valid": n}


@torch.no_grad()
def redundancy_elimination(decoded: dict, cfg: RedundancyConfig) -> list[dict]:
    """Batched decoded candidates (as from a head's ``decode``) -> per frame
    ``{"boxes", "scores", "labels"}`` of the valid detections (same format as post-processing)."""
    out = []
    scores = decoded["scores"]
    if decoded.get("valid") is not None:  # padded candidates (e.g. RoIs) never survive
        scores = torch.where(decoded["valid"], scores, torch.full_like(scores, -1.0))
    for b in range(decoded["boxes"].shape[0]):
        iou = decoded["iou"][b] if decoded.get("iou") is not None else None
        r = eliminate_frame(decoded["boxes"][b], scores[b], decoded["labels"][b], iou, cfg)
        n = r["valid"]
        out.append({"boxes": r["boxes"][:n], "scores": r["scores"][:n], "labels": r["labels"][:n], "iou": None})
    return out
