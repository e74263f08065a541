"""Masked BEV feature distillation through a learned 1x1 adapter (student channels -> teacher
channels, resized to the teacher's BEV resolution)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureAdapter(nn.Module):
    """1x1 conv mapping student BEV features to the teacher's width (and grid)."""

    def __init__(self, c_student: int, c_teacher: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c_student, c_teacher, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.proj(x)


def masked_feature_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean squared error over cells (channel-summed), normalised by the mask sum.
    Zero iff the features agree wherever the mask is positive."""
    err = (student - teacher.detach()).pow(2).mean(1)  # (N,H,W)
    return (err * mask).sum() / mask.sum().clamp(min=1e-6)
