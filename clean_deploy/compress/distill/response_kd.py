"""Dense class-response distillation between heterogeneous heads: both heads' classification
outputs become per-class BEV logit maps (anchor heads: best anchor per cell and class; center
heads: the heatmap), resized to a common grid and matched with a masked Bernoulli KL."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def class_logit_map(head, preds: dict) -> torch.Tensor:
    """(N, C, H, W) class logits of a dense head's raw outputs (the head's own reading)."""
    return head.class_logit_map(preds)


def bernoulli_kl(student_logits: torch.Tensor, teacher_prob: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(teacher || student) of Bernoulli distributions; 0 iff probabilities agree."""
    t = teacher_prob.detach().clamp(1e-6, 1 - 1e-6)
    ls = F.logsigmoid(student_logits)
    lns = F.logsigmoid(-student_logits)
    return t * (torch.log(t) - ls) + (1 - t) * (torch.log(1 - t) - lns)


def masked_response_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Student (N,C,h,w) and teacher (N,C,H,W) logit maps; mask (N,H,W) on the teacher grid."""
    size = teacher_map.shape[-2:]
    if student_map.shape[-2:] != size:
        student_map = F.interpolate(student_map, size=size, mode="bilinear", align_corners=False)
    kl = bernoulli_kl(student_map, torch.sigmoid(teacher_map)).sum(1)  # (N,H,W)
    return (kl * mask).sum() / mask.sum().clamp(min=1e-6)
