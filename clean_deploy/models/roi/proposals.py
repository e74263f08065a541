"""First-stage proposals for the RoI head: top-scoring dense boxes, rotated NMS, fixed count."""
from __future__ import annotations

import torch

from clean_deploy.geometry.nms import nms_rotated


@torch.no_grad()
def select_proposals(decoded: dict, nms_pre: int, nms_post: int, nms_thresh: float) -> dict:
    """Per sample: top ``nms_pre`` by score, class-agnostic NMS, keep ``nms_post``, zero-pad.

    Returns rois (N,R,7), roi_scores (N,R), roi_labels (N,R) (0-based), valid (N,R) bool.
    """
    boxes, scores, labels = decoded["boxes"], decoded["scores"], decoded["labels"]
    n = boxes.shape[0]
    rois = boxes.new_zeros(n, nms_post, 7)
    roi_scores = scores.new_zeros(n, nms_post)
    roi_labels = labels.new_zeros(n, nms_post)
    valid = torch.zeros(n, nms_post, dtype=torch.bool, device=boxes.device)
    for b in range(n):
        k = min(nms_pre, scores.shape[1])
        top_s, top_i = scores[b].topk(k)
        cand = boxes[b, top_i, :7]
        cand = torch.cat([cand[:, :3], cand[:, 3:6].clamp(min=0.1), cand[:, 6:7]], 1)
        keep = nms_rotated(cand, top_s, nms_thresh, post_max=nms_post)
        m = len(keep)
        rois[b, :m] = cand[keep]
        roi_scores[b, :m] = top_s[keep]
        roi_labels[b, :m] = labels[b, top_i[keep]]
        valid[b, :m] = True
    return {"rois": rois, "roi_scores": roi_scores, "roi_labels": roi_labels, "valid": valid}
