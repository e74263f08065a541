"""Rotated-box non-maximum suppression (greedy, exact BEV IoU), plain and class-aware.

The greedy loop runs in a numba kernel (:mod:`clean_deploy.geometry.nms_kernel`)."""
from __future__ import annotations

import numpy as np
import torch

from clean_deploy.geometry.nms_kernel import greedy_nms

__all__ = ["nms_rotated", "nms_rotated_multiclass"]


def nms_rotated(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                pre_max: int | None = None, post_max: int | None = None) -> torch.Tensor:
    """Greedy NMS on LiDAR boxes ``(N,7+)`` by BEV IoU.

    Returns indices into ``boxes`` of the kept boxes, highest score first. ``pre_max`` keeps only
    the top-scoring boxes before suppression, ``post_max`` caps the result.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    if pre_max is not None:
        order = order[:pre_max]
    cand = boxes[order, :7].detach().to("cpu", torch.float64).numpy()
    keep = greedy_nms(np.ascontiguousarray(cand), float(iou_threshold))
    kept = order[torch.from_numpy(np.flatnonzero(keep)).to(order.device)]
    if post_max is not None:
        kept = kept[:post_max]
    return kept


def nms_rotated_multiclass(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                           iou_threshold: float | dict[int, float] | list[float],
                           pre_max: int | None = None, post_max: int | None = None) -> torch.Tensor:
    """Class-aware NMS: boxes only suppress boxes of their own label.

    ``iou_threshold`` may be one value or one per label (dict or list indexed by label).
    Returns kept indices sorted by score (descending), capped at ``post_max``.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    kept = []
    for lab in labels.unique().tolist():
        idx = (labels == lab).nonzero(as_tuple=True)[0]
        thr = iou_threshold if isinstance(iou_threshold, (int, float)) else iou_threshold[lab]
        kept.append(idx[nms_rotated(boxes[idx], scores[idx], float(thr), pre_max=pre_max)])
    kept = torch.cat(kept)
    kept = kept[scores[kept].argsort(descending=True, stable=True)]
    return kept[:post_max] if post_max is not None else kept
