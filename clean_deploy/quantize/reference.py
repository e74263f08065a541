"""NumPy integer reference of ``clean_deploy::SparseConvolutionInt8`` (docs/custom_ops.md).

Independent of the C++ code: the output sites and neighbours come from a brute-force search over
the input sites, the sums are int64 matrix products. The C++ kernel must match it bitwise::

    acc   = bias + sum_k x[nbr(o, k)] @ W_k^T                    (exact)
    m     = float32(float64(x_scale) * float64(w_scale) / float64(y_scale))
    out   = clip(rint(float32(acc) * m), relu ? 0 : -128, 127)    (float32 product, half to even)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _triple(v) -> np.ndarray:
    return np.array([int(v)] * 3 if np.isscalar(v) else [int(x) for x in v], np.int64)


def _keys(idx: np.ndarray, shape: np.ndarray) -> np.ndarray:
    b, z, y, x = (idx[:, i].astype(np.int64) for i in range(4))
    return ((b * shape[0] + z) * shape[1] + y) * shape[2] + x


def rulebook_reference(indices: np.ndarray, kernel_size, *, spatial_shape: Sequence[int], stride=1, padding=0,
                       dilation=1, subm: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(out_indices [M, 4] int32, neighbors [M, K] int64 with -1 for no input) of one sparse conv:
    submanifold outputs are the inputs in order, regular outputs sorted by (b, z, y, x)."""
    idx = np.asarray(indices, np.int64).reshape(-1, 4)
    k, s, p, d = _triple(kernel_size), _triple(stride), _triple(padding), _triple(dilation)
    shape = np.array([int(v) for v in spatial_shape], np.int64)
    offs = np.stack(np.meshgrid(*(np.arange(n) for n in k), indexing="ij"), -1).reshape(-1, 3)  # K x 3 (kz, ky, kx)
    if subm:
        out, out_shape = idx, shape
        # input site of output o through offset k: o + (k - K//2) * d
        src = out[:, None, 1:] + (offs[None] - k // 2) * d
    else:
        out_shape = (shape + 2 * p - d * (k - 1) - 1) // s + 1
        # o * s = i + p - k * d must be a multiple of s and 0 <= o < out_shape
        num = idx[:, None, 1:] + p - offs[None] * d                                   # N x K x 3
        ok = np.all((num % s == 0) & (num >= 0) & (num // s < out_shape), -1)
        cand = np.concatenate([np.broadcast_to(idx[:, None, :1], num.shape[:2] + (1,)), num // s], -1)[ok]
        out = np.unique(cand.reshape(-1, 4), axis=0) if len(cand) else np.zeros((0, 4), np.int64)
        src = out[:, None, 1:] * s - p + offs[None] * d
    inside = np.all((src >= 0) & (src < shape), -1)
    src_keys = _keys(np.concatenate([np.broadcast_to(out[:, None, :1], src.shape[:2] + (1,)),
                                     np.where(inside[..., None], src, 0)], -1).reshape(-1, 4), shape).reshape(src.shape[:2])
    in_keys = _keys(idx, shape)
    order = np.argsort(in_keys, kind="stable")
    pos = np.searchsorted(in_keys[order], src_keys)
    pos_c = np.minimum(pos, max(len(idx) - 1, 0))
    found = inside & (len(idx) > 0) & (in_keys[order][pos_c] == src_keys if len(idx) else False)
    nbr = np.where(found, order[pos_c] if len(idx) else 0, -1)
    return out.astype(np.int32), nbr


def requant_multipliers(x_scale: float, w_scale: np.ndarray, y_scale: float) -> np.ndarray:
    return (np.float64(np.float32(x_scale)) * np.asarray(w_scale, np.float32).astype(np.float64)
            / np.float64(np.float32(y_scale))).astype(np.float32)


def sparse_conv_int8_reference(features: np.ndarray, indices: np.ndarray, weight: np.ndarray, x_scale: float,
                               w_scale: np.ndarray, y_scale: float, bias: np.ndarray | None = None, *,
                               spatial_shape: Sequence[int], stride=1, padding=0, dilation=1, subm: bool = False,
                               activation: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """(out_features [M, Cout] int8, out_indices [M, 4] int32) of SparseConvolutionInt8."""
    x = np.asarray(features, np.int8)
    w = np.asarray(weight, np.int8)
    cout, kd, kh, kw, cin = w.shape
    out_idx, nbr = rulebook_reference(indices, (kd, kh, kw), spatial_shape=spatial_shape, stride=stride,
                                      padding=padding, dilation=dilation, subm=subm)
    acc = np.zeros((len(out_idx), cout), np.int64)
    if bias is not None:
        acc += np.asarray(bias, np.int32).astype(np.int64)
    wk = w.reshape(cout, kd * kh * kw, cin).astype(np.int64)
    x64 = x.astype(np.int64)
    for k in range(wk.shape[1]):
        rows = nbr[:, k] >= 0
        if rows.any():
            acc[rows] += x64[nbr[rows, k]] @ wk[:, k, :].T
    if np.abs(acc).max(initial=0) >= 2**31:
        raise OverflowError("int32 accumulator overflow in the reference")
    m = requant_multipliers(x_scale, w_scale, y_scale)
    y = np.rint(acc.astype(np.int32).astype(np.float32) * m[None, :])
    lo = 0.0 if activation == "relu" else -128.0
    return np.clip(y, lo, 127.0).astype(np.int8), out_idx
