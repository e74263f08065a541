"""Global scaling of a frame about the LiDAR origin (point xyz, box centres and sizes).
OpenPCDet's ``random_world_scaling``: factor uniform in ``[lo, hi]``."""
from __future__ import annotations

import numpy as np

__all__ = ["scale", "global_scaling"]


def scale(points: np.ndarray, boxes: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Multiply point xyz and box x y z l w h by ``factor`` (new arrays)."""
    points = points.copy()
    boxes = boxes.copy()
    points[:, 0:3] = points[:, 0:3] * factor
    boxes[:, 0:6] = boxes[:, 0:6] * factor
    return points, boxes


def global_scaling(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                   scale_range: tuple[float, float] = (0.95, 1.05)
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale by a factor uniform in ``scale_range``; returns ``(points, boxes, factor)``."""
    factor = float(rng.uniform(scale_range[0], scale_range[1]))
    points, boxes = scale(points, boxes, factor)
    return points, boxes, factor
