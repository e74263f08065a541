"""KITTI-format detection dataset (reader -> crop -> augment -> voxelise) and its batch collation.
Deterministic: each sample's RNG is derived from (seed, epoch, index), so workers don't matter.

Pipeline of ``dataset[i]`` (OpenPCDet's ``KittiDataset`` + ``DatasetTemplate.prepare_data``):

1. read the frame; keep points in camera 2's FOV (``DataConfig.fov_only``); drop DontCare labels.
2. training only, in this order: GT sampling (collisions checked against *all* remaining labels,
   Van/Truck/... included), random flip along x, global rotation, global scaling.
3. points cropped to the detector's ``point_cloud_range`` (``min <= p < max``). Training: labels kept when their
   class is in the detector's ``class_names``, their centre is in range, their KITTI difficulty is not in
   ``drop_difficulties`` and (if ``min_points_in_gt > 0``) they hold that many points; then the
   points are shuffled. Eval: labels of ``class_names`` only (no range/point filters, as
   OpenPCDet's test mode). Frames left without boxes are returned as they are (``(0, 8)``).
4. yaw wrapped to ``[-pi, pi)``; voxelisation (``max_voxels_train`` / ``max_voxels_test``).

A sample is a dict of numpy arrays: ``frame_id`` (str), ``points`` (N,4) float32,
``gt_boxes`` (M,8) float32 ``x y z l w h yaw class`` (class 1-based in ``class_names``),
``gt_names`` (M,), ``voxels`` (V,T,4) float32, ``voxel_coords`` (V,3) int32 z y x,
``voxel_num_points`` (V,) int32, ``calib`` (:class:`Calibration`), ``image_shape`` (2,) int32 H W.
:func:`collate_batch` turns a list of samples into a batch of torch tensors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from clean_deploy.config import ExperimentConfig
from clean_deploy.data.augment.global_rotation import global_rotation
from clean_deploy.data.augment.global_scaling import global_scaling
from clean_deploy.data.augment.gt_sampling import GTDatabase, GTSampler, build_gt_database, dataset_fingerprint
from clean_deploy.data.augment.random_flip import random_flip_x
from clean_deploy.data.kitti.reader import KittiReader
from clean_deploy.data.preprocess import (boxes_in_range_mask, class_indices, count_points_in_boxes,
                                          fov_mask, kitti_difficulty, label_mask,
                                          points_in_range_mask)
from clean_deploy.data.voxelize import Voxelizer
from clean_deploy.geometry.boxes import limit_period
from clean_deploy.models.config import DetectorConfig

__all__ = ["KittiDetectionDataset", "collate_batch", "sample_rng"]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The RNG of one sample: independent streams for every (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


class KittiDetectionDataset(Dataset):
    """Frames of one split as voxelised training/eval samples (see the module docstring)."""

    def __init__(self, cfg: ExperimentConfig, detector: DetectorConfig, split: str | None = None, training: bool = True,
                 seed: int = 0, gt_database: GTDatabase | str | Path | None = None,
                 reader: KittiReader | None = None) -> None:
        """``cfg``: data and augmentation; ``detector``: the geometry (classes, range, voxels)."""
        if not isinstance(detector, DetectorConfig):
            raise TypeError(f"KittiDetectionDataset(cfg, detector, ...): detector must be the DetectorConfig whose "
                            f"range, voxels and classes the samples use, got {type(detector).__name__}")
        self.cfg = cfg
        self.detector = detector
        self.training = bool(training)
        self.seed = int(seed)
        self.epoch = 0
        d = cfg.data
        self.class_names: tuple[str, ...] = tuple(detector.class_names)
        self.point_cloud_range = np.asarray(detector.point_cloud_range, dtype=np.float32)
        self.split = split or (d.train_split if training else d.val_split)
        self.reader = reader or KittiReader(d.root, self.split, nan_policy=d.nan_policy,
                                            default_image_shape=d.default_image_shape)
        self.voxelizer = Voxelizer.from_config(detector, self.training)
        self.grid_size = self.voxelizer.grid_size
        self.sampler: GTSampler | None = None
        if self.training and cfg.augment.gt_sampling.enabled:
            self.sampler = GTSampler(self._load_database(gt_database), cfg.augment.gt_sampling)

    def _load_database(self, db: GTDatabase | str | Path | None) -> GTDatabase:
        if isinstance(db, GTDatabase):
            return db
        d = self.cfg.data
        if db is None and d.gt_database_path:
            db = d.gt_database_path
        path = Path(db) if db is not None else None
        train_reader = (self.reader if self.split == d.train_split else
                        KittiReader(d.root, d.train_split, nan_policy=d.nan_policy,
                                    default_image_shape=d.default_image_shape))
        fingerprint = dataset_fingerprint(train_reader, self.class_names) if path is not None else None
        if path is not None and path.is_file():
            # a database built from other frames (another dataset, edited labels) is rebuilt, never reused
            if GTDatabase.stored_fingerprint(path) == fingerprint:
                return GTDatabase.load(path)
            print(f"{path}: built from other data than {d.root} split '{d.train_split}': rebuilding it")
        return build_gt_database(train_reader, self.class_names, out_path=path,
                                 progress=len(train_reader) > 200, fingerprint=fingerprint)

    def __len__(self) -> int:
        return len(self.reader)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call before each epoch; workers see it when the
        DataLoader re-creates them, i.e. without ``persistent_workers``)."""
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return (f"KittiDetectionDataset(split={self.split!r}, frames={len(self)}, "
                f"training={self.training}, sampler={self.sampler!r})")

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        d, aug = self.cfg.data, self.cfg.augment
        frame = self.reader.get_frame(self.reader.frame_ids[index])
        rng = sample_rng(self.seed, self.epoch, index)

        points = frame.points
        if d.fov_only:
            points = points[fov_mask(points, frame.calib, frame.image_shape)]
        keep = label_mask(frame.gt_names)  # drops DontCare
        boxes = frame.gt_boxes[keep].astype(np.float32)
        names = np.asarray(frame.gt_names)[keep].astype(str)
        difficulty = (kitti_difficulty(frame.labels)[keep] if frame.labels is not None
                      else np.zeros(0, dtype=np.int64))

        if self.training:
            if self.sampler is not None:
                points, boxes, names, sampled = self.sampler(points, boxes, names, rng)
                difficulty = np.concatenate([difficulty, self.sampler.database.difficulty[sampled]])
            if aug.random_flip_x:
                points, boxes, _ = random_flip_x(points, boxes, rng)
            if aug.global_rotation is not None:
                points, boxes, _ = global_rotation(points, boxes, rng, tuple(aug.global_rotation))
            if aug.global_scaling is not None:
                points, boxes, _ = global_scaling(points, boxes, rng, tuple(aug.global_scaling))
            points = points[points_in_range_mask(points, self.point_cloud_range)]
            keep = label_mask(names, self.class_names, difficulty, d.drop_difficulties)
            keep &= boxes_in_range_mask(boxes, self.point_cloud_range)
            if d.min_points_in_gt > 0:
                counts = np.zeros(len(boxes), dtype=np.int64)
                counts[keep] = count_points_in_boxes(points, boxes[keep])
                keep &= counts >= d.min_points_in_gt
            points = points[rng.permutation(len(points))]
        else:
            points = points[points_in_range_mask(points, self.point_cloud_range)]
            keep = label_mask(names, self.class_names)
        boxes, names = boxes[keep], names[keep]
        boxes[:, 6] = limit_period(boxes[:, 6])
        gt_boxes = np.concatenate(
            [boxes[:, :7], class_indices(names, self.class_names)[:, None].astype(np.float32)], 1)

        points = np.ascontiguousarray(points, dtype=np.float32)
        voxels, coords, num = self.voxelizer(points)
        return {
            "frame_id": frame.frame_id,
            "points": points,
            "gt_boxes": gt_boxes.astype(np.float32),
            "gt_names": names,
            "voxels": voxels,
            "voxel_coords": coords,
            "voxel_num_points": num,
            "calib": frame.calib,
            "image_shape": np.asarray(frame.image_shape, dtype=np.int32),
        }


def collate_batch(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: ``points`` (sum N, 5) ``b x y z i``; ``voxels`` concatenated;
    ``voxel_coords`` (sum V, 4) int32 ``b z y x``; ``voxel_num_points`` (sum V,);
    ``gt_boxes`` (B, max M, 8) zero-padded (class 0 = padding); ``image_shape`` (B, 2);
    ``frame_id`` (B,) numpy str; ``gt_names``/``calib`` lists; ``batch_size`` int."""
    if len(samples) == 0:
        raise ValueError("collate_batch: empty list of samples")
    bsz = len(samples)

    def with_batch_index(arrays: list[np.ndarray], dtype) -> torch.Tensor:
        out = [np.concatenate([np.full((len(a), 1), b, dtype=dtype),
                               a.astype(dtype, copy=False)], 1) for b, a in enumerate(arrays)]
        return torch.from_numpy(np.concatenate(out, 0))

    max_gt = max(len(s["gt_boxes"]) for s in samples)
    gt = np.zeros((bsz, max_gt, samples[0]["gt_boxes"].shape[1]), dtype=np.float32)
    for b, s in enumerate(samples):
        gt[b, :len(s["gt_boxes"])] = s["gt_boxes"]
    return {
        "batch_size": bsz,
        "frame_id": np.array([s["frame_id"] for s in samples]),
        "points": with_batch_index([s["points"] for s in samples], np.float32),
        "voxels": torch.from_numpy(np.concatenate([s["voxels"] for s in samples], 0)),
        "voxel_coords": with_batch_index([s["voxel_coords"] for s in samples], np.int32),
        "voxel_num_points": torch.from_numpy(
            np.concatenate([s["voxel_num_points"] for s in samples], 0)),
        "gt_boxes": torch.from_numpy(gt),
        "gt_names": [s["gt_names"] for s in samples],
        "calib": [s["calib"] for s in samples],
        "image_shape": torch.from_numpy(np.stack([s["image_shape"] for s in samples])),
    }
