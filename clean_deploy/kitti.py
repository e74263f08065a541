"""KITTI's constants and its difficulty rule, once for the whole package (core layer).

Difficulty levels (KITTI devkit; thresholds on the 2D box height ``y2 - y1`` in pixels, the
occlusion level and the truncation): easy >= 40 px, occlusion <= 0, truncation <= 0.15;
moderate >= 25 px, <= 1, <= 0.30; hard >= 25 px, <= 2, <= 0.50. The evaluation
(:mod:`clean_deploy.eval.kitti_protocol`) applies the devkit's ``clean_data`` form of the same
thresholds, in which a ground truth of exactly the minimum height is ignored.
"""
from __future__ import annotations

import numpy as np

#: the three classes of the KITTI 3D benchmark, in the order every model here predicts them
KITTI_CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
#: OpenPCDet's KITTI range ``x_min y_min z_min x_max y_max z_max`` (LiDAR frame, metres)
KITTI_POINT_CLOUD_RANGE: tuple[float, ...] = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
DIFFICULTY_NAMES: tuple[str, ...] = ("easy", "moderate", "hard")
#: per difficulty (easy, moderate, hard): minimum 2D box height (px), maximum occlusion and truncation
MIN_HEIGHT: tuple[float, ...] = (40.0, 25.0, 25.0)
MAX_OCCLUSION: tuple[int, ...] = (0, 1, 2)
MAX_TRUNCATION: tuple[float, ...] = (0.15, 0.3, 0.5)


def difficulty_level(height, occluded, truncated, dont_care=None) -> np.ndarray:
    """(N,) easiest difficulty each object counts for: 0 easy, 1 moderate, 2 hard, -1 none.
    Occlusion or truncation -1 (KITTI's DontCare lines) and ``dont_care`` rows are -1."""
    height, occ, trunc = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (height, occluded, truncated))
    level = np.full(len(height), -1, dtype=np.int64)
    for d in reversed(range(3)):  # hard first, so the easiest level that holds wins
        ok = (height >= MIN_HEIGHT[d]) & (occ <= MAX_OCCLUSION[d]) & (trunc <= MAX_TRUNCATION[d])
        level[ok] = d
    bad = (trunc < 0) | (occ < 0)
    if dont_care is not None:
        bad |= np.asarray(dont_care, dtype=bool).reshape(-1)
    level[bad] = -1
    return level
