"""Random flip along the LiDAR x axis: ``y -> -y`` and ``yaw -> -yaw`` for points and boxes.
OpenPCDet's ``random_world_flip`` with ``ALONG_AXIS_LIST: ['x']``, probability 0.5."""
from __future__ import annotations

import numpy as np

from clean_deploy.geometry.boxes import limit_period

__all__ = ["flip_x", "random_flip_x"]


def flip_x(points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror points (N,3+) and boxes (M,7+) in the x-z plane (new arrays)."""
    points = points.copy()
    boxes = boxes.copy()
    points[:, 1] = -points[:, 1]
    boxes[:, 1] = -boxes[:, 1]
    boxes[:, 6] = limit_period(-boxes[:, 6].astype(np.float64)).astype(boxes.dtype)
    return points, boxes


def random_flip_x(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                  prob: float = 0.5) -> tuple[np.ndarray, np.ndarray, bool]:
    """Flip with probability ``prob``; returns ``(points, boxes, flipped)``."""
    flipped = bool(rng.random() < prob)
    if flipped:
        points, boxes = flip_x(points, boxes)
    return points, boxes, flipped
