"""Frame preprocessing: camera-FOV and point-cloud-range cropping, KITTI difficulty, label filters.
Pure vectorised numpy functions returning boolean masks or filtered arrays.

Range conventions (chosen to match the voxeliser exactly):

* points are kept when ``min <= p < max`` in x, y and z -- the same half-open rule as
  spconv's ``PointToVoxel`` (``floor((p - min) / voxel) < grid``), so every cropped point lands
  in a voxel (up to float32 rounding at ``max`` and ranges not divisible by the voxel size).
* boxes are kept when their **centre** satisfies the same rule (OpenPCDet's
  ``mask_boxes_outside_range_numpy`` with ``USE_CENTER_TO_FILTER: True``, except that OpenPCDet
  also accepts a centre exactly on ``max``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from clean_deploy.data.kitti.label import LabelArrays
from clean_deploy.geometry.boxes import points_in_boxes_mask
from clean_deploy.geometry.calib import Calibration
from clean_deploy.kitti import difficulty_level

__all__ = [
    "fov_mask",
    "points_in_range_mask",
    "boxes_in_range_mask",
    "kitti_difficulty",
    "count_points_in_boxes",
    "class_indices",
    "label_mask",
]


def fov_mask(points: np.ndarray, calib: Calibration, image_shape: tuple[int, int]) -> np.ndarray:
    """(N,) bool: points projecting into the (H, W) image of camera 2 with positive depth
    (OpenPCDet's ``FOV_POINTS_ONLY``; a pixel ``u`` is inside when ``0 <= u < W``)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return calib.fov_mask(points[:, :3], image_shape)


def points_in_range_mask(points: np.ndarray, pc_range: Sequence[float]) -> np.ndarray:
    """(N,) bool: ``min <= xyz < max`` for ``pc_range = (x0, y0, z0, x1, y1, z1)``."""
    r = np.asarray(pc_range, dtype=np.float32)
    keep = points[:, 0] >= r[0]  # axis by axis: ~5x faster than comparing (N, 3) blocks and .all(1)
    for a in range(3):
        if a:
            keep &= points[:, a] >= r[a]
        keep &= points[:, a] < r[a + 3]
    return keep


def boxes_in_range_mask(boxes: np.ndarray, pc_range: Sequence[float]) -> np.ndarray:
    """(M,) bool: box centre inside the range (same half-open rule as points)."""
    boxes = np.asarray(boxes)
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    return points_in_range_mask(boxes, pc_range)


def kitti_difficulty(labels: LabelArrays) -> np.ndarray:
    """(N,) int KITTI difficulty of each label: 0 easy, 1 moderate, 2 hard, -1 none of them
    (:func:`clean_deploy.kitti.difficulty_level`; DontCare lines are -1). OpenPCDet's gt database
    uses the same levels but measures the height as ``y2 - y1 + 1``."""
    return difficulty_level(labels.bbox[:, 3] - labels.bbox[:, 1], labels.occluded, labels.truncated,
                            labels.name == "DontCare")


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M,) int64 number of points inside each box (boundaries inclusive; a point inside two
    overlapping boxes counts for both)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(points) == 0:
        return np.zeros(len(boxes), dtype=np.int64)
    return points_in_boxes_mask(points[:, :3], boxes[:, :7]).sum(0).astype(np.int64)


def class_indices(names: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(M,) int32 1-based index of each name in ``class_names``; 0 for names not listed."""
    lookup = {n: i + 1 for i, n in enumerate(class_names)}
    return np.array([lookup.get(str(n), 0) for n in names], dtype=np.int32).reshape(len(names))


def label_mask(names: np.ndarray,
               class_names: Sequence[str] | None = None,
               difficulty: np.ndarray | None = None,
               drop_difficulties: Sequence[int] = (),
               num_points: np.ndarray | None = None,
               min_points: int = 0) -> np.ndarray:
    """(M,) bool mask of labels to keep: never DontCare; only ``class_names`` when given; not in
    ``drop_difficulties`` (needs ``difficulty``); at least ``min_points`` points (needs
    ``num_points``)."""
    names = np.asarray(names)
    keep = names != "DontCare"
    if class_names is not None:
        keep &= np.isin(names, np.asarray(list(class_names)))
    if len(drop_difficulties):
        if difficulty is None:
            raise ValueError("label_mask: drop_difficulties needs the difficulty array")
        keep &= ~np.isin(difficulty, np.asarray(list(drop_difficulties)))
    if min_points > 0:
        if num_points is None:
            raise ValueError("label_mask: min_points needs the num_points array")
        keep &= np.asarray(num_points) >= min_points
    return keep
