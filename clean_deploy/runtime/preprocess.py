"""Deploy-time pre-processing shared by every backend: validate a raw point cloud, crop it to the
camera FOV (when calibration is given) and the detector's range, voxelise it into a batch of one."""
from __future__ import annotations

import numpy as np
import torch

from clean_deploy.data.preprocess import fov_mask, points_in_range_mask
from clean_deploy.data.voxelize import Voxelizer
from clean_deploy.geometry.calib import KITTI_IMAGE_SHAPE, Calibration


class PointCloudInputError(ValueError):
    """A point cloud handed to a runtime session that it cannot process."""


def validate_points(points, num_features: int = 4, name: str = "points") -> np.ndarray:
    """(N, C) float32 finite array or a clear error naming what is wrong."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    if not isinstance(points, np.ndarray):
        raise PointCloudInputError(f"{name}: expected a numpy array (N, {num_features}), got {type(points).__name__}")
    if points.ndim != 2 or points.shape[1] != num_features:
        raise PointCloudInputError(f"{name}: expected shape (N, {num_features}) x y z intensity, got {points.shape}")
    if points.dtype != np.float32:
        if not np.issubdtype(points.dtype, np.floating):
            raise PointCloudInputError(f"{name}: expected float32 values, got dtype {points.dtype}")
        points = points.astype(np.float32)
    if not np.isfinite(points).all():  # the per-row scan only when something is wrong
        bad = ~np.isfinite(points).all(1)
        raise PointCloudInputError(f"{name}: {int(bad.sum())} of {len(points)} points have NaN/inf values "
                                   f"(first at row {int(np.flatnonzero(bad)[0])}); drop them before inference")
    return np.ascontiguousarray(points)


class Preprocessor:
    """Crop + voxelise (``max_voxels`` voxels at most) with a detector config's parameters or the
    ones of an exported model's sidecar (:meth:`from_sidecar`)."""

    def __init__(self, cfg=None, strict_max_voxels: bool = False, *, voxel_size=None, point_cloud_range=None,
                 max_points_per_voxel: int | None = None, max_voxels: int | None = None) -> None:
        if cfg is not None:
            voxel_size, point_cloud_range = cfg.voxel_size, cfg.point_cloud_range
            max_points_per_voxel, max_voxels = cfg.max_points_per_voxel, cfg.max_voxels_test
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        self.max_voxels = int(max_voxels)
        self.voxelizer = Voxelizer(voxel_size, point_cloud_range, max_points_per_voxel, max_voxels)
        self.strict = strict_max_voxels

    @classmethod
    def from_sidecar(cls, sidecar: dict, strict_max_voxels: bool = True) -> "Preprocessor":
        p = sidecar["preprocess"]
        return cls(None, strict_max_voxels, voxel_size=p["voxel_size"], point_cloud_range=p["point_cloud_range"],
                   max_points_per_voxel=p["max_points_per_voxel"], max_voxels=p["max_voxels"])

    def crop(self, points: np.ndarray, calib: Calibration | None = None,
             image_shape: tuple[int, int] = KITTI_IMAGE_SHAPE) -> np.ndarray:
        # both masks are per point, so the order does not change the result; the cheap range test
        # first leaves the projection far fewer points
        points = points[points_in_range_mask(points, self.point_cloud_range)]
        if calib is not None and len(points):
            points = points[fov_mask(points, calib, image_shape)]
        return points

    def count_voxels(self, pts: np.ndarray) -> int:
        """Distinct voxels the points of ``pts`` fill inside the grid (no cap), by the voxeliser's rule."""
        zyx, inside = self.voxelizer.point_voxel_coords(pts)
        return int(len(np.unique(zyx[inside], axis=0)))

    def __call__(self, points: np.ndarray, calib: Calibration | None = None,
                 image_shape: tuple[int, int] = KITTI_IMAGE_SHAPE) -> dict:
        pts = self.crop(validate_points(points), calib, image_shape)
        voxels, coords, num = self.voxelizer(pts)
        if self.strict and len(voxels) >= self.max_voxels:
            filled = self.count_voxels(pts)
            if filled > self.max_voxels:
                raise PointCloudInputError(
                    f"points: the cloud fills {filled} voxels, more than the model's max_voxels="
                    f"{self.max_voxels}; {filled - self.max_voxels} voxels would be dropped silently "
                    "(crop the cloud or re-export with a larger cap)")
        coords = np.concatenate([np.zeros((len(coords), 1), np.int32), coords], 1)
        return {"batch_size": 1, "voxels": torch.from_numpy(voxels), "voxel_coords": torch.from_numpy(coords),
                "voxel_num_points": torch.from_numpy(num), "points": pts}
