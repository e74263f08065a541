"""Tiny hand-made LiDAR batches for model tests (no dataset needed)."""
import numpy as np
import torch

from clean_deploy.data.dataset import collate_batch
from clean_deploy.data.voxelize import Voxelizer

TOY_BOXES = np.array([
    [12.0, 3.0, -0.95, 3.9, 1.6, 1.5, 0.2, 1],
    [20.0, -6.0, -0.9, 4.2, 1.7, 1.6, 1.8, 1],
    [9.0, -2.5, -0.85, 0.8, 0.6, 1.75, 0.5, 2],
    [15.0, 7.0, -0.85, 1.8, 0.6, 1.7, -1.2, 3],
], dtype=np.float32)


def toy_points(boxes: np.ndarray, rng: np.random.Generator, n_ground: int = 6000, per_box: int = 400):
    ground = np.stack([rng.uniform(0, 40, n_ground), rng.uniform(-20, 20, n_ground),
                       rng.normal(-1.73, 0.02, n_ground), rng.uniform(0, 1, n_ground)], 1)
    objs = []
    for b in boxes:
        u = rng.uniform(-0.5, 0.5, (per_box, 3)) * b[3:6]
        # push to the surface facing the sensor-ish: keep points near the box faces
        face = rng.integers(0, 3, per_box)
        u[np.arange(per_box), face] = np.sign(u[np.arange(per_box), face]) * b[3 + face] / 2
        c, s = np.cos(b[6]), np.sin(b[6])
        xy = np.stack([u[:, 0] * c - u[:, 1] * s, u[:, 0] * s + u[:, 1] * c], 1) + b[:2]
        objs.append(np.concatenate([xy, u[:, 2:3] + b[2], rng.uniform(0.2, 0.9, (per_box, 1))], 1))
    return np.concatenate([ground] + objs).astype(np.float32)


def toy_samples(cfg, n_frames: int = 2, seed: int = 0, boxes: np.ndarray = TOY_BOXES) -> list[dict]:
    """``n_frames`` toy frames voxelised for detector config ``cfg`` (dataset-sample dicts)."""
    rng = np.random.default_rng(seed)
    vox = Voxelizer(cfg.voxel_size, cfg.point_cloud_range, cfg.max_points_per_voxel, cfg.max_voxels_train)
    samples = []
    for i in range(n_frames):
        b = boxes.copy()
        b[:, :2] += rng.normal(0, 0.3, (len(b), 2)).astype(np.float32)
        pts = toy_points(b, rng)
        pr = cfg.point_cloud_range
        keep = ((pts[:, :3] >= pr[:3]) & (pts[:, :3] < pr[3:])).all(1)
        pts = pts[keep]
        v, c, n = vox(pts)
        samples.append({"frame_id": f"{i:06d}", "points": pts, "gt_boxes": b, "gt_names": np.array(["x"] * len(b)),
                        "voxels": v, "voxel_coords": c, "voxel_num_points": n, "calib": None,
                        "image_shape": np.array([375, 1242], dtype=np.int32)})
    return samples


def toy_batch(cfg, n_frames: int = 2, seed: int = 0, boxes: np.ndarray = TOY_BOXES) -> dict:
    """A collated batch of ``n_frames`` toy frames."""
    return collate_batch(toy_samples(cfg, n_frames, seed, boxes))
