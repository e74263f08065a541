"""3D box conventions, corners, camera<->LiDAR box conversion and points-in-box tests.

LiDAR boxes are ``(x, y, z, l, w, h, yaw)`` (OpenPCDet): centre of the box, ``l`` along the
heading, ``w`` across it, ``h`` vertical, ``yaw`` counter-clockwise from the LiDAR x axis.
Camera boxes (KITTI labels) are bottom-centred in rectified camera coordinates with
``rotation_y`` about the camera's down-pointing y axis: ``yaw = -(ry + pi/2)``.
Functions accept numpy arrays or torch tensors and return the same kind.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from clean_deploy.geometry.calib import Calibration


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x)), True


def _back(x: torch.Tensor, was_numpy: bool):
    return x.numpy() if was_numpy else x


def limit_period(val, offset: float = 0.5, period: float = 2 * math.pi):
    """Wrap angles into ``[-offset*period, (1-offset)*period)``."""
    if isinstance(val, torch.Tensor):
        return val - torch.floor(val / period + offset) * period
    return val - np.floor(val / period + offset) * period


def bev_corners(boxes):
    """(N,7+) boxes -> (N,4,2) BEV corners in counter-clockwise order, box-frame offsets
    (+l/2,+w/2), (-l/2,+w/2), (-l/2,-w/2), (+l/2,-w/2) in the box frame."""
    b, np_in = _as_tensor(boxes)
    sign = b.new_tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    local = sign[None] * (b[:, None, 3:5] / 2)  # (N,4,2)
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (N,2,2)
    out = torch.einsum("nij,nkj->nki", rot, local) + b[:, None, 0:2]
    return _back(out, np_in)


def bev_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,7+) and (M,7+) boxes -> (N,M) bool: their BEV rectangles share an area (bev IoU > 0).

    Separating-axis test: two rectangles are disjoint exactly when their projections on one of the
    four edge normals do not overlap (touching counts as disjoint: no shared area). Much cheaper
    than the exact rotated IoU when only overlap matters (GT-sampling collision tests)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, np.shape(a)[-1] if np.ndim(a) > 1 else 7)
    b = np.asarray(b, dtype=np.float64).reshape(-1, np.shape(b)[-1] if np.ndim(b) > 1 else 7)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=bool)
    ca, cb = bev_corners(a[:, :7]), bev_corners(b[:, :7])  # (N,4,2), (M,4,2)

    def axes(boxes):
        c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
        return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)  # (K,2,2): length and width normals

    overlap = np.ones((len(a), len(b)), dtype=bool)
    for ax, on_a in ((axes(a[:, :7]), True), (axes(b[:, :7]), False)):
        for k in range(2):
            u = ax[:, k, :]  # (N,2) or (M,2)
            if on_a:
                pa = np.einsum("ncd,nd->nc", ca, u)[:, None, :]  # (N,1,4)
                pb = np.einsum("mcd,nd->nmc", cb, u)  # (N,M,4)
            else:
                pa = np.einsum("ncd,md->nmc", ca, u)  # (N,M,4)
                pb = np.einsum("mcd,md->mc", cb, u)[None]  # (1,M,4)
            overlap &= (pa.max(-1) > pb.min(-1)) & (pb.max(-1) > pa.min(-1))
    return overlap


def corners_3d(boxes):
    """(N,7+) LiDAR boxes -> (N,8,3) corners: 4 bottom (ccw) then 4 top (same order)."""
    b, np_in = _as_tensor(boxes)
    bev = bev_corners(b)
    zb = (b[:, 2] - b[:, 5] / 2)[:, None, None].expand(-1, 4, 1)
    zt = zb + b[:, 5][:, None, None]
    out = torch.cat([torch.cat([bev, zb], -1), torch.cat([bev, zt], -1)], 1)
    return _back(out, np_in)


def boxes_camera_to_lidar(boxes_cam: np.ndarray, calib: Calibration) -> np.ndarray:
    """(N,7) camera boxes ``x y z l h w ry`` (bottom centre, rect) -> (N,7) LiDAR boxes."""
    boxes_cam = np.asarray(boxes_cam, dtype=np.float64).reshape(-1, 7)
    xyz = calib.rect_to_lidar(boxes_cam[:, 0:3])
    l, h, w, ry = boxes_cam[:, 3], boxes_cam[:, 4], boxes_cam[:, 5], boxes_cam[:, 6]
    xyz[:, 2] += h / 2
    yaw = limit_period(-(ry + np.pi / 2))
    return np.concatenate([xyz, l[:, None], w[:, None], h[:, None], yaw[:, None]], 1)


def boxes_lidar_to_camera(boxes_lidar: np.ndarray, calib: Calibration) -> np.ndarray:
    """(N,7) LiDAR boxes -> (N,7) camera boxes ``x y z l h w ry`` (bottom centre, rect)."""
    b = np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7)
    bottom = b[:, 0:3].copy()
    bottom[:, 2] -= b[:, 5] / 2
    xyz = calib.lidar_to_rect(bottom)
    ry = limit_period(-b[:, 6] - np.pi / 2)
    return np.concatenate([xyz, b[:, 3:4], b[:, 5:6], b[:, 4:5], ry[:, None]], 1)


def boxes_to_image(boxes_lidar: np.ndarray, calib: Calibration,
                   image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """(N,7) LiDAR boxes -> (N,4) 2D boxes ``x1 y1 x2 y2`` of their projected corners
    (clipped to the image when ``image_shape`` (H, W) is given). Corners behind the camera are
    clamped to a small positive depth so boxes crossing the image plane stay finite."""
    c = corners_3d(np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7))
    n = len(c)
    rect = calib.lidar_to_rect(c.reshape(-1, 3))
    rect[:, 2] = np.maximum(rect[:, 2], 0.1)
    uv, _ = calib.rect_to_img(rect)
    uv = uv.reshape(n, 8, 2)
    box = np.concatenate([uv.min(1), uv.max(1)], 1)
    if image_shape is not None:
        h, w = image_shape
        box[:, [0, 2]] = box[:, [0, 2]].clip(0, w - 1)
        box[:, [1, 3]] = box[:, [1, 3]].clip(0, h - 1)
    return box


def alpha_from_ry(ry, loc_x, loc_z):
    """Observation angle alpha of KITTI: ``ry - atan2(x, z)`` wrapped to [-pi, pi)."""
    return limit_period(ry - np.arctan2(loc_x, loc_z))


def points_in_boxes_mask(points, boxes):
    """(P,3+) points, (N,7+) LiDAR boxes -> (P,N) bool: point inside box (boundaries inclusive)."""
    p, np_p = _as_tensor(points)
    b, _ = _as_tensor(boxes)
    b = b.to(p.dtype)
    if len(b) == 0 or len(p) == 0:
        out = torch.zeros(len(p), len(b), dtype=torch.bool)
        return _back(out, np_p)
    d = p[:, None, 0:3] - b[None, :, 0:3]  # (P,N,3)
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    out = ((lx.abs() <= b[:, 3] / 2) & (ly.abs() <= b[:, 4] / 2) & (d[..., 2].abs() <= b[:, 5] / 2))
    return _back(out, np_p)


def points_in_boxes_index(points, boxes, chunk: int = 200_000):
    """(P,) int64: index of the (first) box containing each point, -1 for none. Chunked over
    points so memory stays ``chunk * N``."""
    p, np_p = _as_tensor(points)
    b, _ = _as_tensor(boxes)
    out = torch.full((len(p),), -1, dtype=torch.long)
    if len(b) == 0:
        return _back(out, np_p)
    for i in range(0, len(p), chunk):
        m = points_in_boxes_mask(p[i:i + chunk], b)
        has = m.any(1)
        first = m.to(torch.int8).argmax(1)
        out[i:i + chunk] = torch.where(has, first, torch.full_like(first, -1))
    return _back(out, np_p)


def enlarge_boxes(boxes, extra=(0.2, 0.2, 0.2)):
    """Boxes grown by ``extra`` (dl, dw, dh) metres (e.g. to remove a GT's points with margin)."""
    b, np_in = _as_tensor(boxes)
    b = b.clone()
    b[:, 3:6] = b[:, 3:6] + b.new_tensor(extra)
    return _back(b, np_in)


def boxes_camera_to_pseudo_lidar(boxes_cam):
    """(N,7) camera boxes ``x y z l h w ry`` -> LiDAR-convention boxes by a fixed rigid axis swap
    (lidar x = rect z, y = -rect x, z = -rect y), no calibration needed. IoUs are invariant under
    rigid motions, so the evaluator uses this to compare camera-frame labels and results."""
    b, np_in = _as_tensor(boxes_cam)
    b = b.reshape(-1, 7)
    x, y, z, l, h, w, ry = b.unbind(-1)
    out = torch.stack([z, -x, -(y - h / 2), l, w, h, -(ry + math.pi / 2)], -1)
    return _back(out, np_in)


def rotate_points_z_batch(points: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each set of points (B,N,3+) about z by its own angle (B,) (counter-clockwise)."""
    c, s = torch.cos(angles)[:, None], torch.sin(angles)[:, None]
    x, y = points[..., 0], points[..., 1]
    return torch.cat([(x * c - y * s)[..., None], (x * s + y * c)[..., None], points[..., 2:]], -1)


def box_corners_loss(pred: torch.Tensor, gt: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Corner loss of Voxel R-CNN/PointRCNN: smooth-L1 of the 8 corner distances, taking the
    better of the GT and its heading-flipped copy (so a pi error costs nothing). -> (N,)"""
    pc = corners_3d(pred)
    gc = corners_3d(gt)
    flipped = gt.clone()
    flipped[:, 6] = flipped[:, 6] + math.pi
    gcf = corners_3d(flipped)
    d = torch.minimum((pc - gc).norm(dim=2), (pc - gcf).norm(dim=2))
    huber = torch.where(d < delta, 0.5 * d ** 2 / delta, d - 0.5 * delta)
    return huber.mean(1)
