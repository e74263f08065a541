"""Voxelisation of a point cloud with spconv's ``PointToVoxel`` (CPU, or CUDA via ``device``).
Gives voxels (V, max_points, C), coords (V, 3) as z, y, x int32 and points per voxel (V,).

A point's voxel is ``floor((p - range_min) / voxel_size)`` in float32 (x y z); points outside
``[0, grid)`` are dropped. Voxels come in order of their first point, each keeping its first
``max_points_per_voxel`` points; once ``max_voxels`` voxels exist, points of new voxels are
dropped. The result is therefore a deterministic function of the point order (the dataset
shuffles points with its seeded RNG in training, as OpenPCDet's ``shuffle_points``).

The spconv generator allocates a dense int32 hash of the whole grid on CPU (~360 MB for KITTI's
1408x1600x40), so it is created lazily on first use and not pickled: each DataLoader worker
builds its own.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch

from clean_deploy.config import grid_size as _grid_size
from clean_deploy.models.config import DetectorConfig
from clean_deploy.models.sparse import PointToVoxel, require_spconv

__all__ = ["Voxelizer"]


class Voxelizer:
    """Callable ``points -> (voxels, coords_zyx, num_points)``; numpy in -> numpy out, torch in ->
    torch out (on ``device``)."""

    def __init__(self, voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                 max_points_per_voxel: int = 5, max_voxels: int = 16000,
                 num_point_features: int = 4, device: torch.device | str = "cpu") -> None:
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        if len(self.voxel_size) != 3 or len(self.point_cloud_range) != 6:
            raise ValueError("voxel_size needs 3 numbers and point_cloud_range 6")
        self.max_points_per_voxel = int(max_points_per_voxel)
        self.max_voxels = int(max_voxels)
        self.num_point_features = int(num_point_features)
        self.device = torch.device(device)
        #: (nx, ny, nz) as spconv computes it
        self.grid_size = np.array(_grid_size(self.point_cloud_range, self.voxel_size),
                                  dtype=np.int64)
        self._gen: PointToVoxel | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, det: DetectorConfig, training: bool, num_point_features: int = 4,
                    device: torch.device | str = "cpu") -> "Voxelizer":
        """The voxeliser of a detector (its range, voxel size, points per voxel, voxel cap)."""
        return cls(det.voxel_size, det.point_cloud_range, det.max_points_per_voxel,
                   det.max_voxels_train if training else det.max_voxels_test, num_point_features, device)

    def __repr__(self) -> str:
        return (f"Voxelizer(voxel_size={self.voxel_size}, range={self.point_cloud_range}, "
                f"grid={tuple(self.grid_size)}, max_points={self.max_points_per_voxel}, "
                f"max_voxels={self.max_voxels}, device={self.device})")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_gen"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _generator(self) -> PointToVoxel:
        if self._gen is None:
            require_spconv()
            self._gen = PointToVoxel(vsize_xyz=list(self.voxel_size),
                                     coors_range_xyz=list(self.point_cloud_range),
                                     num_point_features=self.num_point_features,
                                     max_num_voxels=self.max_voxels,
                                     max_num_points_per_voxel=self.max_points_per_voxel,
                                     device=self.device)
        return self._gen

    def __call__(self, points: np.ndarray | torch.Tensor):
        as_numpy = not isinstance(points, torch.Tensor)
        if as_numpy:
            pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
        else:
            pts = points
        if pts.ndim != 2 or pts.shape[1] != self.num_point_features:
            raise ValueError(f"Voxelizer expects (N, {self.num_point_features}) points, "
                             f"got {tuple(pts.shape)}")
        pts = pts.detach().to(device=self.device, dtype=torch.float32).contiguous()
        if pts.shape[0] == 0:
            voxels = torch.zeros(0, self.max_points_per_voxel, self.num_point_features,
                                 dtype=torch.float32, device=self.device)
            coords = torch.zeros(0, 3, dtype=torch.int32, device=self.device)
            num = torch.zeros(0, dtype=torch.int32, device=self.device)
        else:
            with self._lock:
                voxels, coords, num = self._generator()(pts)
        if as_numpy:
            return voxels.cpu().numpy(), coords.cpu().numpy(), num.cpu().numpy()
        return voxels, coords, num

    def point_voxel_coords(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference: (N,3) int64 z, y, x voxel of each point by the float32 floor rule, and the
        (N,) bool mask of points inside the grid."""
        lo = np.asarray(self.point_cloud_range[:3], dtype=np.float32)
        vs = np.asarray(self.voxel_size, dtype=np.float32)
        c = np.floor((np.asarray(points, dtype=np.float32)[:, :3] - lo) / vs).astype(np.int64)
        inside = ((c >= 0) & (c < self.grid_size)).all(1)
        return c[:, ::-1].copy(), inside
