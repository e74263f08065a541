"""Losses shared by the heads: sigmoid focal, CenterNet focal, smooth-L1 with the angle
sin-difference, direction-bin targets, and a DDP-consistent normaliser."""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from clean_deploy.geometry.boxes import limit_period


def global_normalizer(n: torch.Tensor) -> torch.Tensor:
    """Average of ``n`` over DDP processes (itself when not distributed), clamped to >= 1.

    Each process divides its loss sum by the *global* average count, so DDP's gradient average
    equals the single-process gradient of the whole batch.
    """
    n = n.detach().to(torch.float32).clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return n.clamp(min=1.0)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (RetinaNet); ``targets`` may be soft (in [0,1])."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return a_t * (1 - p_t).pow(gamma) * ce


def centernet_focal_loss(logits: torch.Tensor, target: torch.Tensor, num_pos: torch.Tensor,
                         alpha: float = 2.0, beta: float = 4.0,
                         pos_weight: torch.Tensor | None = None,
                         peak_value: torch.Tensor | None = None) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss over gaussian heatmaps, divided by ``num_pos``;
    ``pos_weight`` (same shape) scales the loss at the peaks.

    ``peak_value`` (same shape; read at the peaks, where ``target == 1``): soft targets ``y`` of the
    peaks. There the loss is the quality focal loss ``-|y - p|^alpha (y log p + (1 - y) log(1 - p))``
    (GFL), which is CenterNet's positive term when ``y = 1`` and zero when ``p = y``."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    peaks = target.eq(1).to(pred.dtype)
    pos = peaks
    if pos_weight is not None:
        pos = pos * pos_weight
    neg = 1 - peaks
    if peak_value is not None:
        y = torch.where(peaks > 0, peak_value.to(pred.dtype), torch.ones_like(pred))
        pos_loss = (y * torch.log(pred) + (1 - y) * torch.log(1 - pred)) * (y - pred).abs().pow(alpha) * pos
    else:
        pos_loss = torch.log(pred) * (1 - pred).pow(alpha) * pos
    neg_loss = torch.log(1 - pred) * pred.pow(alpha) * (1 - target).pow(beta) * neg
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


def smooth_l1(diff: torch.Tensor, beta: float) -> torch.Tensor:
    a = diff.abs()
    if beta < 1e-5:
        return a
    return torch.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)


def add_sin_difference(pred: torch.Tensor, target: torch.Tensor, dim: int = 6):
    """Replace the angle channel so that ``pred - target`` becomes ``sin(pred - target)``."""
    rad_pred = torch.sin(pred[..., dim:dim + 1]) * torch.cos(target[..., dim:dim + 1])
    rad_tgt = torch.cos(pred[..., dim:dim + 1]) * torch.sin(target[..., dim:dim + 1])
    pred = torch.cat([pred[..., :dim], rad_pred, pred[..., dim + 1:]], -1)
    target = torch.cat([target[..., :dim], rad_tgt, target[..., dim + 1:]], -1)
    return pred, target


def direction_target(yaw: torch.Tensor, dir_offset: float, num_bins: int) -> torch.Tensor:
    """Direction-bin index of each yaw (SECOND's direction classifier target)."""
    rot = limit_period(yaw - dir_offset, 0.0, 2 * math.pi)
    return torch.floor(rot / (2 * math.pi / num_bins)).long().clamp(0, num_bins - 1)


def apply_direction(yaw: torch.Tensor, dir_labels: torch.Tensor, dir_offset: float,
                    dir_limit_offset: float, num_bins: int) -> torch.Tensor:
    """Resolve the heading ambiguity of a regressed yaw with the predicted direction bin."""
    period = 2 * math.pi / num_bins
    rot = limit_period(yaw - dir_offset, dir_limit_offset, period)
    return rot + dir_offset + period * dir_labels.to(yaw.dtype)


def normalised_weight(w: torch.Tensor, mask: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """``w`` divided by its mean over ``mask`` (loss weights that keep the loss scale); with
    ``groups`` (integer labels of ``w``'s shape, e.g. classes) by the mean over the masked entries of
    its own group, so that the weights shift emphasis within a group and never between groups."""
    if groups is None:
        mean = (w * mask).sum() / mask.sum().clamp(min=1)
        return w / mean.clamp(min=1e-6)
    m = mask.to(w.dtype)
    g = groups.long().clamp(min=0)
    n = int(g.max()) + 1 if g.numel() else 1
    total = w.new_zeros(n).index_add_(0, g.reshape(-1), (w * m).reshape(-1))
    count = w.new_zeros(n).index_add_(0, g.reshape(-1), m.reshape(-1))
    mean = torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total))  # empty group: w as is
    return w / mean[g].clamp(min=1e-6)
