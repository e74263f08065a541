"""Rotated-box IoU on LiDAR boxes: exact BEV and 3D IoU (polygon clipping), and the fast
axis-aligned "nearest BEV" IoU used for anchor assignment. Vectorised torch, float64 inside.

Boxes are ``(x, y, z, l, w, h, yaw)`` (see :mod:`clean_deploy.geometry.boxes`). Inputs may be numpy
arrays or torch tensors; outputs are the same kind (numpy float64 / the input tensor's dtype).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from clean_deploy.geometry.boxes import bev_corners, limit_period

__all__ = [
    "iou_bev",
    "iou_3d",
    "iou_bev_paired",
    "iou_3d_paired",
    "intersection_bev_paired",
    "iou_bev_nearest",
]

_EPS = 1e-9
#: pairs evaluated per chunk in the pairwise functions (bounds peak memory to ~100 MB)
_CHUNK = 200_000


def _to_t64(x) -> tuple[torch.Tensor, bool, torch.dtype]:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).reshape(-1, x.shape[-1]), False, x.dtype
    arr = np.asarray(x, dtype=np.float64)
    return torch.from_numpy(arr.reshape(-1, arr.shape[-1]) if arr.size else arr.reshape(0, 7)), True, torch.float64


def _out(x: torch.Tensor, was_numpy: bool, dtype: torch.dtype, device=None):
    if was_numpy:
        return x.numpy()
    return x.to(dtype=dtype, device=device)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(P,K,2) points, (P,7) boxes -> (P,K) point inside the box's BEV rectangle (with tolerance)."""
    d = points - boxes[:, None, 0:2]
    c, s = torch.cos(boxes[:, 6])[:, None], torch.sin(boxes[:, 6])[:, None]
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    tol = 1e-10 * (1.0 + boxes[:, 3:5].abs().max(1).values)[:, None]
    return (lx.abs() <= boxes[:, 3:4] / 2 + tol) & (ly.abs() <= boxes[:, 4:5] / 2 + tol)


def intersection_bev_paired(a, b):
    """BEV intersection area of box ``a[i]`` with ``b[i]`` -> (P,)."""
    ta, np_in, dtype = _to_t64(a)
    tb, _, _ = _to_t64(b)
    dev = ta.device
    out = _intersection_area(ta.cpu(), tb.cpu())
    return _out(out, np_in, dtype, dev)


def _intersection_area(ba: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
    """Exact intersection area of two convex rectangles per pair (float64, (P,7) each)."""
    p = ba.shape[0]
    if p == 0:
        return ba.new_zeros(0)
    ca, cb = bev_corners(ba), bev_corners(bb)  # (P,4,2)
    da = ca.roll(-1, 1) - ca
    db = cb.roll(-1, 1) - cb
    # edge i of A against edge j of B: a1 + t*da = b1 + u*db
    den = _cross(da[:, :, None, :], db[:, None, :, :])  # (P,4,4)
    w = cb[:, None, :, :] - ca[:, :, None, :]  # (P,4,4,2)
    safe = torch.where(den.abs() > _EPS, den, torch.ones_like(den))
    t = _cross(w, db[:, None, :, :]) / safe
    u = _cross(w, da[:, :, None, :]) / safe
    ok = (den.abs() > _EPS) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    ipts = ca[:, :, None, :] + t[..., None] * da[:, :, None, :]  # (P,4,4,2)
    pts = torch.cat([ca, cb, ipts.reshape(p, 16, 2)], 1)  # (P,24,2)
    valid = torch.cat([_inside(ca, bb), _inside(cb, ba), ok.reshape(p, 16)], 1)
    n = valid.sum(1)
    vf = valid.to(pts.dtype)[..., None]
    centre = (pts * vf).sum(1) / n.clamp(min=1)[:, None].to(pts.dtype)
    rel = pts - centre[:, None, :]
    ang = torch.atan2(rel[..., 1], rel[..., 0])
    ang = torch.where(valid, ang, torch.full_like(ang, math.inf))
    order = ang.argsort(1)
    rel = rel.gather(1, order[..., None].expand(-1, -1, 2))
    valid_sorted = valid.gather(1, order)
    # invalid points (sorted last) collapse onto the first point: they add zero area
    rel = torch.where(valid_sorted[..., None], rel, rel[:, :1, :].expand_as(rel))
    area = 0.5 * _cross(rel, rel.roll(-1, 1)).sum(1).abs()
    return torch.where(n >= 3, area, torch.zeros_like(area))


def _height_overlap(ba: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
    lo = torch.maximum(ba[:, 2] - ba[:, 5] / 2, bb[:, 2] - bb[:, 5] / 2)
    hi = torch.minimum(ba[:, 2] + ba[:, 5] / 2, bb[:, 2] + bb[:, 5] / 2)
    return (hi - lo).clamp(min=0)


def _paired_iou(ba: torch.Tensor, bb: torch.Tensor, three_d: bool) -> torch.Tensor:
    inter = _intersection_area(ba, bb)
    if three_d:
        inter = inter * _height_overlap(ba, bb)
        va, vb = ba[:, 3] * ba[:, 4] * ba[:, 5], bb[:, 3] * bb[:, 4] * bb[:, 5]
    else:
        va, vb = ba[:, 3] * ba[:, 4], bb[:, 3] * bb[:, 4]
    union = (va + vb - inter).clamp(min=_EPS)
    return inter / union


def iou_bev_paired(a, b):
    """BEV IoU of ``a[i]`` with ``b[i]`` -> (P,)."""
    ta, np_in, dtype = _to_t64(a)
    tb, _, _ = _to_t64(b)
    return _out(_paired_iou(ta.cpu(), tb.cpu(), False), np_in, dtype, ta.device)


def iou_3d_paired(a, b):
    """3D IoU of ``a[i]`` with ``b[i]`` -> (P,)."""
    ta, np_in, dtype = _to_t64(a)
    tb, _, _ = _to_t64(b)
    return _out(_paired_iou(ta.cpu(), tb.cpu(), True), np_in, dtype, ta.device)


def _pairwise(a, b, three_d: bool):
    ta, np_in, dtype = _to_t64(a)
    tb, _, _ = _to_t64(b)
    dev = ta.device
    ta, tb = ta.cpu(), tb.cpu()
    n, m = ta.shape[0], tb.shape[0]
    out = torch.zeros(n, m, dtype=torch.float64)
    if n == 0 or m == 0:
        return _out(out, np_in, dtype, dev)
    # only pairs whose bounding circles touch can intersect
    ra = 0.5 * torch.hypot(ta[:, 3], ta[:, 4])
    rb = 0.5 * torch.hypot(tb[:, 3], tb[:, 4])
    dist = torch.cdist(ta[:, 0:2], tb[:, 0:2])
    cand = dist <= (ra[:, None] + rb[None, :]) * (1 + 1e-9) + 1e-9
    if three_d:
        cand &= _height_overlap_matrix(ta, tb) > 0
    ii, jj = cand.nonzero(as_tuple=True)
    for s in range(0, len(ii), _CHUNK):
        i, j = ii[s:s + _CHUNK], jj[s:s + _CHUNK]
        out[i, j] = _paired_iou(ta[i], tb[j], three_d)
    return _out(out, np_in, dtype, dev)


def _height_overlap_matrix(ta: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
    lo = torch.maximum((ta[:, 2] - ta[:, 5] / 2)[:, None], (tb[:, 2] - tb[:, 5] / 2)[None])
    hi = torch.minimum((ta[:, 2] + ta[:, 5] / 2)[:, None], (tb[:, 2] + tb[:, 5] / 2)[None])
    return (hi - lo).clamp(min=0)


def iou_bev(a, b):
    """Pairwise exact BEV IoU of rotated boxes: (N,7), (M,7) -> (N,M)."""
    return _pairwise(a, b, three_d=False)


def iou_3d(a, b):
    """Pairwise exact 3D IoU of rotated boxes (BEV polygon intersection x height overlap)."""
    return _pairwise(a, b, three_d=True)


def iou_bev_nearest(a, b):
    """Pairwise BEV IoU after snapping each box to its nearest axis-aligned orientation
    (OpenPCDet's ``boxes3d_nearest_bev_iou``): cheap, used to match anchors to ground truth."""
    ta, np_in, dtype = _to_t64(a)
    tb, _, _ = _to_t64(b)

    def to_aabb(t: torch.Tensor) -> torch.Tensor:
        yaw = limit_period(t[:, 6], 0.5, math.pi).abs()
        swap = yaw > math.pi / 4
        l = torch.where(swap, t[:, 4], t[:, 3])
        w = torch.where(swap, t[:, 3], t[:, 4])
        return torch.stack([t[:, 0] - l / 2, t[:, 1] - w / 2, t[:, 0] + l / 2, t[:, 1] + w / 2], 1)

    ra, rb = to_aabb(ta), to_aabb(tb)
    lt = torch.maximum(ra[:, None, :2], rb[None, :, :2])
    rt = torch.minimum(ra[:, None, 2:], rb[None, :, 2:])
    wh = (rt - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (ra[:, 2] - ra[:, 0]) * (ra[:, 3] - ra[:, 1])
    area_b = (rb[:, 2] - rb[:, 0]) * (rb[:, 3] - rb[:, 1])
    out = inter / (area_a[:, None] + area_b[None] - inter).clamp(min=_EPS)
    return _out(out, np_in, dtype, ta.device)
