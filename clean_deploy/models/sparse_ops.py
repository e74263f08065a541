"""clean_deploy's sparse convolution as a torch operator on CPU (forward and backward on the C++
kernels of ``csrc/``, reached through :mod:`clean_deploy.native.kernels`).

- ``torch.ops.clean_deploy.sparse_conv(features, weight, bias, neighbors, neighbors_t)``: the
  gather-GEMM conv of spconv's SubMConv3d/SparseConv3d over a rulebook (``neighbors[o, k]`` = input
  row feeding output row ``o`` through kernel offset ``k``, or -1). ``weight`` has spconv's layout
  ``[Cout, kD, kH, kW, Cin]``. Differentiable in features, weight and bias (the backward is its own
  operator, ``clean_deploy::sparse_conv_backward``). float32 (SIMD kernels) and float64 (plain
  loops, for gradcheck).
- :func:`build_rulebook`: the output sites and neighbour table of a conv, built once per spatial
  level and shared by the layers with the same indices (spconv's ``indice_key``).

Race-free and deterministic: outputs and gradients are bitwise the same for any thread count
(torch's intra-op thread count is used).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from clean_deploy.native import kernels

__all__ = ["SparseRulebook", "build_rulebook", "sparse_conv"]

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1}


def _addr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None or t.numel() == 0 else t.data_ptr()


@dataclass
class SparseRulebook:
    """Output sites and neighbour table of one conv over one set of input sites."""

    in_indices: Tensor       # (N,4) int32 input sites (b, z, y, x)
    out_indices: Tensor      # (M,4) int32 output sites (the input tensor itself for submanifold convs)
    out_shape: tuple[int, int, int]
    neighbors: Tensor        # (M,K) int32
    geometry: tuple          # (kernel, stride, padding, dilation, in_shape, subm): what it was built for
    _transposed: Optional[Tensor] = field(default=None, repr=False)

    @property
    def num_in(self) -> int:
        return int(self.in_indices.shape[0])

    def transposed(self) -> Tensor:
        """Input-major table (N,K): built on first use (the input gradient needs it), then kept.

        A submanifold conv with an odd (centred) kernel is its own mirror image: input i meets
        output o through offset k exactly when o meets i through the opposite offset K-1-k, so the
        table is the neighbour table with its columns reversed."""
        if self._transposed is None and self.geometry[5] and all(k % 2 == 1 for k in self.geometry[0]):
            self._transposed = self.neighbors.flip(1).contiguous()
        if self._transposed is None:
            m, k = self.neighbors.shape
            t = torch.empty((self.num_in, k), dtype=torch.int32)
            if self.num_in and k:
                kernels.rulebook_transpose(_addr(self.neighbors) or 0, m, k, self.num_in, t.data_ptr(),
                                           torch.get_num_threads())
            self._transposed = t
        return self._transposed


def _triple(v: Sequence[int] | int) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"expected 3 values (z, y, x), got {list(v)}")
    return t  # type: ignore[return-value]


def build_rulebook(indices: Tensor, spatial_shape: Sequence[int], kernel_size, stride=1, padding=0, dilation=1,
                   subm: bool = False) -> SparseRulebook:
    """The rulebook of a conv over the active sites ``indices`` ((N,4) int32, unique, in the grid)."""
    if indices.dtype != torch.int32 or indices.dim() != 2 or indices.shape[1] != 4:
        raise ValueError(f"indices must be an (N,4) int32 tensor, got {tuple(indices.shape)} {indices.dtype}")
    if indices.device.type != "cpu":
        raise ValueError(f"indices must be on the CPU, got {indices.device}")
    idx = indices.contiguous()
    k3, s3, p3, d3, in3 = (_triple(kernel_size), _triple(stride), _triple(padding), _triple(dilation),
                           _triple(spatial_shape))
    geometry = (k3, s3, p3, d3, in3, bool(subm))
    handle, num_out = kernels.rulebook_build(_addr(idx) or 0, int(idx.shape[0]), [*k3, *s3, *p3, *d3, *in3],
                                             subm, torch.get_num_threads())
    kv = k3[0] * k3[1] * k3[2]
    neighbors = torch.empty((num_out, kv), dtype=torch.int32)
    if subm:
        out_idx, out_shape = indices, in3
        kernels.rulebook_take(handle, None, _addr(neighbors))
    else:
        out_idx = torch.empty((num_out, 4), dtype=torch.int32)
        kernels.rulebook_take(handle, _addr(out_idx), _addr(neighbors))
        out_shape = tuple((in3[a] + 2 * p3[a] - d3[a] * (k3[a] - 1) - 1) // s3[a] + 1 for a in range(3))
    return SparseRulebook(indices, out_idx, out_shape, neighbors, geometry)  # type: ignore[arg-type]


def _check(features: Tensor, weight: Tensor, bias: Optional[Tensor], neighbors: Tensor) -> tuple[int, int, int]:
    if features.dtype not in _DTYPE_CODE:
        raise TypeError(f"sparse_conv: features must be float32 or float64, got {features.dtype}")
    if weight.dtype != features.dtype or (bias is not None and bias.dtype != features.dtype):
        raise TypeError(f"sparse_conv: weight/bias dtype must match features ({features.dtype})")
    if features.dim() != 2 or weight.dim() < 3 or weight.shape[-1] != features.shape[1]:
        raise ValueError(f"sparse_conv: features (N,Cin) {tuple(features.shape)} do not fit weight "
                         f"[Cout, kD, kH, kW, Cin] {tuple(weight.shape)}")
    kv = 1
    for s in weight.shape[1:-1]:
        kv *= int(s)
    if neighbors.dtype != torch.int32 or neighbors.dim() != 2 or neighbors.shape[1] != kv:
        raise ValueError(f"sparse_conv: neighbors must be (M,{kv}) int32, got {tuple(neighbors.shape)} {neighbors.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"sparse_conv: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    for name, t in (("features", features), ("weight", weight), ("neighbors", neighbors)):
        if t.device.type != "cpu":
            raise ValueError(f"sparse_conv: {name} must be on the CPU, got {t.device}")
    return int(weight.shape[0]), int(weight.shape[-1]), kv


@torch.library.custom_op("clean_deploy::sparse_conv", mutates_args=(), device_types="cpu")
def sparse_conv(features: Tensor, weight: Tensor, bias: Optional[Tensor], neighbors: Tensor,
                neighbors_t: Tensor) -> Tensor:
    """Sparse conv over a rulebook (module docstring). ``neighbors_t``: the transposed table, needed
    only when the input gradient will be asked for (else an empty tensor)."""
    cout, cin, kv = _check(features, weight, bias, neighbors)
    f, w = features.contiguous(), weight.contiguous()
    b = bias.contiguous() if bias is not None else None
    nb = neighbors.contiguous()
    out = features.new_empty((nb.shape[0], cout))
    if out.numel():
        kernels.conv_forward(_DTYPE_CODE[f.dtype], _addr(f) or 0, f.shape[0], cin, _addr(w) or 0, cout, _addr(b),
                             _addr(nb) or 0, nb.shape[0], kv, out.data_ptr(), torch.get_num_threads())
    elif out.shape[0]:
        out.zero_()
    return out


@sparse_conv.register_fake
def _sparse_conv_fake(features, weight, bias, neighbors, neighbors_t):
    return features.new_empty((neighbors.shape[0], weight.shape[0]))


@torch.library.custom_op("clean_deploy::sparse_conv_backward", mutates_args=(), device_types="cpu")
def sparse_conv_backward(grad_out: Tensor, features: Tensor, weight: Tensor, neighbors: Tensor, neighbors_t: Tensor,
                         need_input: bool, need_weight: bool, need_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`sparse_conv` w.r.t. (features, weight, bias); empty tensors for the ones
    not asked for."""
    cout, cin, kv = _check(features, weight, None, neighbors)
    g, f, w, nb = grad_out.contiguous(), features.contiguous(), weight.contiguous(), neighbors.contiguous()
    if g.dtype != f.dtype or tuple(g.shape) != (nb.shape[0], cout):
        raise ValueError(f"sparse_conv_backward: grad_out must be ({nb.shape[0]},{cout}) {f.dtype}, "
                         f"got {tuple(g.shape)} {g.dtype}")
    if need_input and tuple(neighbors_t.shape) != (f.shape[0], kv):
        raise ValueError("sparse_conv_backward: the input gradient needs the transposed rulebook "
                         f"({f.shape[0]},{kv}), got {tuple(neighbors_t.shape)}")
    empty = f.new_empty((0,))
    gi = f.new_empty(f.shape) if need_input else empty
    gw = w.new_empty(w.shape) if need_weight else empty.clone()
    gb = f.new_empty((cout,)) if need_bias else empty.clone()
    nt = neighbors_t.contiguous() if need_input else None
    if g.shape[0] == 0 or f.shape[0] == 0 or cout == 0 or cin == 0:  # no pairs: features and weight get zero
        for t in (gi, gw):
            t.zero_()
        if need_bias:
            gb.copy_(g.sum(0))  # the bias sees every output row (zeros when there is none)
        return gi, gw, gb
    kernels.conv_backward(_DTYPE_CODE[f.dtype], _addr(f) or 0, f.shape[0], cin, _addr(w) or 0, cout, _addr(nb) or 0,
                          _addr(nt), nb.shape[0], kv, _addr(g) or 0, _addr(gi) if need_input else None,
                          _addr(gw) if need_weight else None, _addr(gb) if need_bias else None,
                          torch.get_num_threads())
    return gi, gw, gb


@sparse_conv_backward.register_fake
def _sparse_conv_backward_fake(grad_out, features, weight, neighbors, neighbors_t, need_input, need_weight, need_bias):
    empty = features.new_empty((0,))
    return (features.new_empty(features.shape) if need_input else empty,
            weight.new_empty(weight.shape) if need_weight else empty.clone(),
            features.new_empty((weight.shape[0],)) if need_bias else empty.clone())


def _setup_context(ctx, inputs, output):
    features, weight, bias, neighbors, neighbors_t = inputs
    ctx.has_bias = bias is not None
    ctx.save_for_backward(features, weight, neighbors, neighbors_t)


def _backward(ctx, grad):
    features, weight, neighbors, neighbors_t = ctx.saved_tensors
    need_in, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]
    gi, gw, gb = torch.ops.clean_deploy.sparse_conv_backward(grad, features, weight, neighbors, neighbors_t,
                                                             need_in, need_w, need_b)
    return (gi if need_in else None, gw if need_w else None, gb if need_b else None, None, None)


sparse_conv.register_autograd(_backward, setup_context=_setup_context)


def conv_with_rulebook(features: Tensor, weight: Tensor, bias: Optional[Tensor], rulebook: SparseRulebook) -> Tensor:
    """:func:`sparse_conv` over ``rulebook``; the transposed table is built (once per rulebook) only
    when the input gradient can be needed."""
    need_t = torch.is_grad_enabled() and features.requires_grad
    nt = rulebook.transposed() if need_t else rulebook.neighbors.new_empty((0, rulebook.neighbors.shape[1]))
    return torch.ops.clean_deploy.sparse_conv(features, weight, bias, rulebook.neighbors, nt)
