"""KITTI object-detection folder reader: frame ids, point clouds, calibration, labels.
Validates what it reads and names the offending file (and line) in every error.

Layout (KITTI's, as OpenPCDet expects it)::

    root/ImageSets/{train,val,test,...}.txt       one frame id per line
    root/training/velodyne/ID.bin                 float32 x y z intensity, 16 bytes per point
    root/training/calib/ID.txt
    root/training/label_2/ID.txt                  optional (absent under testing/)
    root/training/image_2/ID.png                  optional (only its size is read, from the header)

Split ``"test"`` reads ``testing/``, every other split ``training/``.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import LabelArrays, read_label_file, to_arrays
from clean_deploy.geometry.boxes import boxes_camera_to_lidar
from clean_deploy.geometry.calib import KITTI_IMAGE_SHAPE, Calibration

__all__ = ["Frame", "KittiReader", "PointCloudError", "read_points_file", "read_png_shape"]


class PointCloudError(ValueError):
    """A velodyne ``.bin`` that is not a valid float32 (N,4) point cloud."""


@dataclass
class Frame:
    """One KITTI frame. ``gt_*`` are index-aligned with ``labels`` (DontCare included)."""

    frame_id: str
    points: np.ndarray  # (N,4) float32 x y z intensity, LiDAR frame
    gt_boxes: np.ndarray  # (M,7) float32 LiDAR boxes x y z l w h yaw
    gt_names: np.ndarray  # (M,) str
    labels: LabelArrays | None  # raw labels; None where the split has no label_2/
    calib: Calibration
    image_shape: tuple[int, int]  # (H, W) of image_2


def read_points_file(path: str | Path, nan_policy: str = "raise") -> np.ndarray:
    """(N,4) float32 points of a velodyne ``.bin``. A 0-byte file gives (0,4).

    Raises :class:`PointCloudError` naming the file when its size is not a multiple of 16 bytes
    or when it has NaN/inf values (``nan_policy="raise"``, the default); ``nan_policy="drop"``
    drops the non-finite points instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velodyne file not found: {path}")
    size = os.path.getsize(path)
    if size % 16:
        raise PointCloudError(
            f"{path}: size {size} bytes is not a multiple of 16 (float32 x y z intensity); "
            "truncated or not a KITTI velodyne file")
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    finite = np.isfinite(pts).all(1)
    if not finite.all():
        bad = int((~finite).sum())
        if nan_policy == "drop":
            return np.ascontiguousarray(pts[finite])
        if nan_policy != "raise":
            raise ValueError(f"nan_policy must be 'raise' or 'drop', got {nan_policy!r}")
        first = int(np.flatnonzero(~finite)[0])
        raise PointCloudError(
            f"{path}: {bad} of {len(pts)} points have NaN/inf values (first at point {first}); "
            "remove them from the file (library callers can pass nan_policy='drop' to KittiReader or DataConfig "
            "to skip such points)")
    return pts


def read_png_shape(path: str | Path) -> tuple[int, int] | None:
    """(H, W) from a PNG's IHDR header, or ``None`` if ``path`` is not a readable PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return int(h), int(w)


class KittiReader:
    """Frames of one split of a KITTI-format folder."""

    def __init__(self, root: str | Path, split: str = "train", nan_policy: str = "raise",
                 default_image_shape: tuple[int, int] = KITTI_IMAGE_SHAPE) -> None:
        if nan_policy not in ("raise", "drop"):
            raise ValueError(f"nan_policy must be 'raise' or 'drop', got {nan_policy!r}")
        self.root = Path(root)
        self.split = split
        self.nan_policy = nan_policy
        self.default_image_shape = (int(default_image_shape[0]), int(default_image_shape[1]))
        self.split_dir = self.root / ("testing" if split == "test" else "training")
        split_file = self.root / "ImageSets" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"split {split!r}: ImageSets file not found: {split_file}")
        self.split_file = split_file
        ids = [ln.strip() for ln in split_file.read_text().splitlines()]
        self.frame_ids: list[str] = [i for i in ids if i]
        if len(set(self.frame_ids)) != len(self.frame_ids):
            raise ValueError(f"{split_file}: duplicate frame ids")
        #: KITTI's testing/ has no label_2/: frames then have no ground truth
        self.has_labels = (self.split_dir / "label_2").is_dir()

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __repr__(self) -> str:
        return f"KittiReader({str(self.root)!r}, split={self.split!r}, frames={len(self)})"

    # ------------------------------------------------------------------ paths
    def velodyne_path(self, frame_id: str) -> Path:
        return self.split_dir / "velodyne" / f"{frame_id}.bin"

    def calib_path(self, frame_id: str) -> Path:
        return self.split_dir / "calib" / f"{frame_id}.txt"

    def label_path(self, frame_id: str) -> Path:
        return self.split_dir / "label_2" / f"{frame_id}.txt"

    def image_path(self, frame_id: str) -> Path:
        return self.split_dir / "image_2" / f"{frame_id}.png"

    # ------------------------------------------------------------------ reads
    def read_points(self, frame_id: str) -> np.ndarray:
        """(N,4) float32 x y z intensity (see :func:`read_points_file`)."""
        return read_points_file(self.velodyne_path(frame_id), self.nan_policy)

    def read_calib(self, frame_id: str) -> Calibration:
        return Calibration.from_file(self.calib_path(frame_id))

    def read_labels(self, frame_id: str) -> LabelArrays | None:
        """Label arrays of the frame; ``None`` when the split has no ``label_2/`` folder.

        A missing label file inside an existing ``label_2/`` is an error (FileNotFoundError).
        """
        if not self.has_labels:
            return None
        return to_arrays(read_label_file(self.label_path(frame_id)))

    def read_image_shape(self, frame_id: str) -> tuple[int, int]:
        """(H, W) of ``image_2/ID.png`` (from its header) or the default when there is none."""
        shape = read_png_shape(self.image_path(frame_id))
        return shape if shape is not None else self.default_image_shape

    def get_frame(self, frame_id: str) -> Frame:
        points = self.read_points(frame_id)
        calib = self.read_calib(frame_id)
        labels = self.read_labels(frame_id)
        if labels is None or len(labels) == 0:
            boxes = np.zeros((0, 7), dtype=np.float32)
            names = np.zeros(0, dtype="<U16") if labels is None else labels.name
        else:
            boxes = boxes_camera_to_lidar(labels.boxes_camera, calib).astype(np.float32)
            names = labels.name
        return Frame(frame_id=frame_id, points=points, gt_boxes=boxes, gt_names=names,
                     labels=labels, calib=calib, image_shape=self.read_image_shape(frame_id))

    def __getitem__(self, index: int) -> Frame:
        return self.get_frame(self.frame_ids[index])
