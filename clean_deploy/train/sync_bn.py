"""Synchronised BatchNorm for multi-process training on any backend (gloo on CPU, NCCL on GPU):
in training mode the batch statistics are those of the global batch (every rank's samples),
exactly as one process would compute them over the whole batch, and the backward pass reduces the
two per-channel sums it needs across ranks. (torch's ``nn.SyncBatchNorm`` does the same on GPUs
only and is not a ``BatchNorm1d/2d``, which BN folding and pruning look for.)

Statistics are combined from each rank's (count, mean, M2) in float64 (Chan's parallel update),
not from sums of squares, so no precision is lost to cancellation."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _dims(x: torch.Tensor) -> list[int]:
    return [0] + list(range(2, x.dim()))


def _shape(x: torch.Tensor) -> list[int]:
    return [1, -1] + [1] * (x.dim() - 2)


class _GlobalBatchNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps: float, momentum: float, group):
        dims, c = _dims(x), x.shape[1]
        n_local = x.numel() // c if c else 0
        xd = x.detach().double()
        mean_l = xd.mean(dims) if n_local else xd.new_zeros(c)
        m2_l = ((xd - mean_l.view(_shape(x))) ** 2).sum(dims) if n_local else xd.new_zeros(c)
        world = dist.get_world_size(group)
        stats = torch.cat([xd.new_tensor([float(n_local)]), mean_l, m2_l]).to(x.device)
        gathered = [torch.empty_like(stats) for _ in range(world)]
        dist.all_gather(gathered, stats, group=group)
        g = torch.stack(gathered)                                   # world x (1 + 2C)
        counts, means, m2s = g[:, :1], g[:, 1:1 + c], g[:, 1 + c:]
        n = float(counts.sum())
        if n == 0:
            raise ValueError("global BatchNorm: no element on any rank")
        mean = (counts * means).sum(0) / n
        m2 = (m2s + counts * (means - mean) ** 2).sum(0)
        var = m2 / n                                                # biased: what normalises the batch
        invstd = torch.rsqrt(var + eps)
        if running_mean is not None:
            with torch.no_grad():
                unbiased = m2 / max(n - 1, 1)
                running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        mean_f, invstd_f = mean.to(x.dtype).view(_shape(x)), invstd.to(x.dtype).view(_shape(x))
        xhat = (x - mean_f) * invstd_f
        w = weight.view(_shape(x)) if weight is not None else None
        y = xhat * w + bias.view(_shape(x)) if weight is not None else xhat
        ctx.save_for_backward(xhat, invstd_f, w if w is not None else torch.ones_like(invstd_f))
        ctx.n, ctx.group, ctx.affine = n, group, weight is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        xhat, invstd, w = ctx.saved_tensors
        dims = _dims(dy)
        sum_dy = dy.sum(dims)
        sum_dy_xhat = (dy * xhat).sum(dims)
        both = torch.cat([sum_dy, sum_dy_xhat]).double()
        dist.all_reduce(both, group=ctx.group)                      # d(sum of every rank's loss)
        c = sum_dy.numel()
        g_dy, g_dy_xhat = (v.to(dy.dtype).view(_shape(dy)) for v in (both[:c], both[c:]))
        dx = w * invstd / ctx.n * (ctx.n * dy - g_dy - xhat * g_dy_xhat)
        dw = sum_dy_xhat if ctx.affine else None                    # local: DDP averages parameter grads
        db = sum_dy if ctx.affine else None
        return dx, dw, db, None, None, None, None, None


class _GlobalBatchNormMixin:
    process_group = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1):
            return super().forward(x)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return _GlobalBatchNormFn.apply(x, self.weight, self.bias,
                                        self.running_mean if self.track_running_stats else None,
                                        self.running_var if self.track_running_stats else None,
                                        self.eps, momentum, self.process_group)


class GlobalBatchNorm1d(_GlobalBatchNormMixin, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training statistics span every rank (same parameters and buffers)."""


class GlobalBatchNorm2d(_GlobalBatchNormMixin, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics span every rank (same parameters and buffers)."""


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm1d/2d of ``module`` (in place) by its global form, sharing the
    parameters and buffers, so state dicts, checkpoints and BN folding are unchanged."""
    for name, child in module.named_children():
        cls = {nn.BatchNorm1d: GlobalBatchNorm1d, nn.BatchNorm2d: GlobalBatchNorm2d}.get(type(child))
        if cls is not None:
            new = cls.__new__(cls)
            new.__dict__ = child.__dict__  # same Parameters, buffers and hooks: nothing is copied
            new.process_group = process_group
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, process_group)
    return module
