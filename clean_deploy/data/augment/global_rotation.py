"""Global rotation of a frame about the LiDAR z axis (points, box centres and yaws together).
OpenPCDet's ``random_world_rotation``: angle uniform in ``[lo, hi]`` radians."""
from __future__ import annotations

import math

import numpy as np

from clean_deploy.geometry.boxes import limit_period

__all__ = ["rotate", "global_rotation"]


def _rotate_xy(xy: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    xy = xy.astype(np.float64)
    return np.stack([xy[:, 0] * c - xy[:, 1] * s, xy[:, 0] * s + xy[:, 1] * c], 1)


def rotate(points: np.ndarray, boxes: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate points (N,3+) and boxes (M,7+) counter-clockwise by ``angle`` about z (float64
    arithmetic, results in the input dtypes; new arrays)."""
    points = points.copy()
    boxes = boxes.copy()
    points[:, 0:2] = _rotate_xy(points[:, 0:2], angle)
    boxes[:, 0:2] = _rotate_xy(boxes[:, 0:2], angle)
    boxes[:, 6] = limit_period(boxes[:, 6].astype(np.float64) + angle)
    return points, boxes


def global_rotation(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                    rot_range: tuple[float, float] = (-math.pi / 4, math.pi / 4)
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotate by an angle uniform in ``rot_range``; returns ``(points, boxes, angle)``."""
    angle = float(rng.uniform(rot_range[0], rot_range[1]))
    points, boxes = rotate(points, boxes, angle)
    return points, boxes, angle
