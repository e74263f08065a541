"""Per-frame compute of a detector: multiply-accumulates counted from each sparse conv's real
rulebook pairs (computed from its input/output coordinates) and from dense layer shapes."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn

from clean_deploy.models.sparse import spconv


def _keys(idx: torch.Tensor, shape) -> torch.Tensor:
    """(V,4) b,z,y,x -> int64 keys (row-major over batch and spatial shape)."""
    d, h, w = (int(s) for s in shape)
    idx = idx.long()
    return ((idx[:, 0] * d + idx[:, 1]) * h + idx[:, 2]) * w + idx[:, 3]


def rulebook_pairs(in_idx: torch.Tensor, out_idx: torch.Tensor, in_shape, ksize, stride, padding,
                   dilation, subm: bool) -> torch.Tensor:
    """Number of (input, output) pairs per kernel offset of a sparse conv -> (K,) int64.

    For each output site ``o`` and offset ``k`` the input site is ``o*stride - padding + k*dilation``
    (for submanifold convs outputs are the inputs and the kernel is centred); a pair exists when
    that input site is active. This is the rulebook spconv builds, counted independently.
    """
    keys = _keys(in_idx, in_shape)
    sorted_keys, _ = keys.sort()
    d, h, w = (int(s) for s in in_shape)
    counts = []
    for off in itertools.product(*[range(k) for k in ksize]):
        if subm:
            src = out_idx[:, 1:].long() + torch.tensor([(o - k // 2) * dl for o, k, dl in zip(off, ksize, dilation)])
        else:
            src = (out_idx[:, 1:].long() * torch.tensor(stride) - torch.tensor(padding)
                   + torch.tensor(off) * torch.tensor(dilation))
        ok = ((src >= 0) & (src < torch.tensor([d, h, w]))).all(1)
        cand = _keys(torch.cat([out_idx[ok, :1].long(), src[ok]], 1), in_shape)
        pos = torch.searchsorted(sorted_keys, cand).clamp(max=max(len(sorted_keys) - 1, 0))
        hit = (sorted_keys[pos] == cand) if len(sorted_keys) else torch.zeros_like(cand, dtype=torch.bool)
        counts.append(int(hit.sum()))
    return torch.tensor(counts, dtype=torch.long)


@dataclass
class LayerCost:
    name: str
    kind: str
    macs: int
    params: int
    pairs: int | None = None
    out_bytes: int = 0  # bytes of the layer's output (sparse: features + indices)


@dataclass
class ComputeProfile:
    """MACs per layer of one forward pass; FLOPs = 2 x MACs."""

    layers: list[LayerCost] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def activation_bytes(self) -> int:
        """Bytes of every compute layer's output in one forward pass: the activations a deployed
        graph (BN folded, activations fused in place) materialises; an upper bound of what must be
        live at once."""
        return sum(layer.out_bytes for layer in self.layers)

    @property
    def max_layer_out_bytes(self) -> int:
        """The largest single layer output (a lower bound of the peak activation memory)."""
        return max((layer.out_bytes for layer in self.layers), default=0)

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for layer in self.layers:
            out[layer.kind] = out.get(layer.kind, 0) + layer.macs
        return out


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def profile_compute(model: nn.Module, batch: dict) -> ComputeProfile:
    """Run ``model(batch)`` once in eval mode with hooks on every compute layer."""
    prof = ComputeProfile()
    hooks = []
    sparse_types = (spconv.SubMConv3d, spconv.SparseConv3d) if spconv is not None else ()

    def sparse_hook(name):
        def hook(mod, inp, out):
            x = inp[0]
            subm = isinstance(mod, spconv.SubMConv3d)
            pairs = rulebook_pairs(x.indices, out.indices, x.spatial_shape, mod.kernel_size, mod.stride,
                                   mod.padding, mod.dilation, subm)
            total = int(pairs.sum())
            prof.layers.append(LayerCost(name, "sparse_conv", total * mod.in_channels * mod.out_channels,
                                         sum(p.numel() for p in mod.parameters()), total,
                                         _nbytes(out.features) + _nbytes(out.indices)))
        return hook

    def dense_hook(name):
        def hook(mod, inp, out):
            p = sum(q.numel() for q in mod.parameters(recurse=False))
            if isinstance(mod, nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                macs = out.numel() * (mod.in_channels // mod.groups) * k
            elif isinstance(mod, nn.ConvTranspose2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                macs = inp[0].numel() * (mod.out_channels // mod.groups) * k
            else:  # Linear
                macs = out.numel() * mod.in_features
            prof.layers.append(LayerCost(name, type(mod).__name__, int(macs), p, out_bytes=_nbytes(out)))
        return hook

    for name, mod in model.named_modules():
        if sparse_types and isinstance(mod, sparse_types):
            hooks.append(mod.register_forward_hook(sparse_hook(name)))
        elif isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(dense_hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return prof
