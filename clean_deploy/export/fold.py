"""BatchNorm folding for export: conv (no bias) + BN (eval statistics) -> conv weight and bias."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


def fold_bn_into_sparse_conv(conv: nn.Module, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """spconv weight ``[Cout, kD, kH, kW, Cin]`` and BN -> folded (weight, bias)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    b = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        b = b + conv.bias * scale
    return w.detach().contiguous(), b.detach().contiguous()


def fold_dense_bn(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in which every ``Sequential(Conv2d|ConvTranspose2d, BatchNorm2d, ...)``
    and ``Sequential(Linear, BatchNorm1d, ...)`` has the BN folded into the conv/linear (the BN
    becomes Identity)."""
    module = copy.deepcopy(module).eval()
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                seq[i + 1] = nn.Identity()
            elif isinstance(conv, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
                seq[i] = fuse_linear_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return module
