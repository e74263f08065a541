"""Rotated-box non-maximum suppression (greedy, exact BEV IoU): class-agnostic, class-aware and
with separate same-class / cross-class thresholds. The greedy loop runs in a numba kernel
(:mod:`clean_deploy.geometry.nms_kernel`)."""
from __future__ import annotations

import numpy as np
import torch

from clean_deploy.geometry.nms_kernel import greedy_nms

__all__ = ["nms_rotated", "nms_rotated_multiclass", "nms_rotated_ordered"]


def nms_rotated_ordered(boxes: torch.Tensor, labels: torch.Tensor | None, same_thresh, cross_thresh: float,
                        max_keep: int | None = None) -> torch.Tensor:
    """Keep mask (bool, same device) of greedy NMS over boxes *already sorted* by priority.

    ``same_thresh``: one value or one per label; ``cross_thresh``: threshold between different
    labels (>= 1 disables cross-label suppression); ``max_keep``: keep at most that many (the
    first ones of the uncapped result; the suppression stops there).
    """
    k = boxes.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=torch.bool, device=boxes.device)
    lab = np.zeros(k, dtype=np.int64) if labels is None else labels.detach().cpu().numpy().astype(np.int64)
    if isinstance(same_thresh, (int, float)):
        thr = np.full(int(lab.max()) + 1, float(same_thresh))
    elif isinstance(same_thresh, dict):
        thr = np.ones(max(int(lab.max()) + 1, max(same_thresh) + 1))
        for c, t in same_thresh.items():
            thr[c] = float(t)
    else:
        thr = np.asarray(same_thresh, dtype=np.float64)
    cand = np.ascontiguousarray(boxes[:, :7].detach().to("cpu", torch.float64).numpy())
    keep = greedy_nms(cand, lab, thr, float(cross_thresh), -1 if max_keep is None else int(max_keep))
    return torch.from_numpy(keep).to(boxes.device)


def nms_rotated(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                pre_max: int | None = None, post_max: int | None = None) -> torch.Tensor:
    """Class-agnostic greedy NMS on LiDAR boxes ``(N,7+)`` by BEV IoU.

    Returns indices into ``boxes`` of the kept boxes, highest score first. ``pre_max`` keeps only
    the top-scoring boxes before suppression, ``post_max`` caps the result.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    if pre_max is not None:
        order = order[:pre_max]
    keep = nms_rotated_ordered(boxes[order], None, float(iou_threshold), float(iou_threshold), post_max)
    kept = order[keep]
    return kept[:post_max] if post_max is not None else kept


def nms_rotated_multiclass(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                           iou_threshold: float | dict[int, float] | list[float],
                           pre_max: int | None = None, post_max: int | None = None,
                           cross_class_threshold: float = 1.0) -> torch.Tensor:
    """Class-aware NMS: boxes suppress boxes of their own label at ``iou_threshold`` (one value or
    per label), and of other labels only above ``cross_class_threshold`` (default: never).
    Returns kept indices sorted by score (descending), capped at ``post_max``."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    if pre_max is not None:
        order = order[:pre_max]
    keep = nms_rotated_ordered(boxes[order], labels[order], iou_threshold, cross_class_threshold, post_max)
    kept = order[keep]
    return kept[:post_max] if post_max is not None else kept
