"""IoU-quality branch: targets (3D IoU of each decoded positive box with its ground truth) and loss.

Both dense heads can switch it on; post-processing then rescores ``score^(1-b) * iou^b``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from clean_deploy.geometry.iou import iou_3d_paired


def iou_targets(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """(P,7) decoded predictions (detached) and their (P,7) targets -> (P,) 3D IoU in [0,1]."""
    if pred_boxes.shape[0] == 0:
        return pred_boxes.new_zeros(0)
    return iou_3d_paired(pred_boxes.detach().float(), gt_boxes.detach().float()).clamp(0, 1)


def blend_iou_target(iou: torch.Tensor, teacher_factor: torch.Tensor, alpha: float) -> torch.Tensor:
    """Label-assignment distillation in the IoU branch: ``iou^alpha * teacher_factor`` with
    ``teacher_factor = quality^(1-alpha)`` (the anchor rule, the student's own IoU as iou_match)."""
    return iou.clamp(0, 1).pow(alpha) * teacher_factor.to(iou.dtype)


def iou_loss(logits: torch.Tensor, targets: torch.Tensor, normalizer: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the predicted quality (sigmoid) against the soft IoU target."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / normalizer


def rescore(scores: torch.Tensor, ious: torch.Tensor, labels: torch.Tensor, betas) -> torch.Tensor:
    """IoU-aware rescoring ``score^(1-b) * iou^b`` with a per-class ``b`` (labels are 0-based)."""
    b = torch.as_tensor(betas, dtype=scores.dtype, device=scores.device)[labels]
    return scores.clamp(min=0).pow(1 - b) * ious.clamp(min=0).pow(b)
