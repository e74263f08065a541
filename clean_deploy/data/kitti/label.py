"""KITTI object label lines (label_2 and result files): parse, validate, format.

A line is ``type trunc occ alpha x1 y1 x2 y2 h w l x y z ry [score]`` in camera-2 rectified
coordinates (location = bottom centre of the box). Result files add the score as column 16.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc",
               "DontCare")


class LabelError(ValueError):
    """A label/result line that does not follow KITTI's format."""


#: object types of KITTI's object benchmark
KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
#: comma-separated extra object types a dataset in KITTI's format may use (e.g. "Bus,Motorcycle")
EXTRA_TYPES_ENV = "CLEAN_DEPLOY_LABEL_TYPES"


def known_types() -> set[str]:
    extra = os.environ.get(EXTRA_TYPES_ENV, "")
    return set(KITTI_TYPES) | {t.strip() for t in extra.split(",") if t.strip()}


@dataclass
class KittiObject:
    """One KITTI object (label or detection)."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]  # x1 y1 x2 y2 (pixels)
    dimensions: tuple[float, float, float]  # h w l (m)
    location: tuple[float, float, float]  # x y z rect camera, bottom centre (m)
    rotation_y: float
    score: float | None = None

    def to_line(self) -> str:
        x1, y1, x2, y2 = self.bbox
        h, w, l = self.dimensions
        x, y, z = self.location
        line = (f"{self.type} {self.truncated:.2f} {int(self.occluded)} {self.alpha:.2f} "
                f"{x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} {h:.2f} {w:.2f} {l:.2f} "
                f"{x:.2f} {y:.2f} {z:.2f} {self.rotation_y:.2f}")
        if self.score is not None:
            line += f" {self.score:.4f}"
        return line


def parse_line(raw: str, source: str = "<memory>", lineno: int = 0,
               require_score: bool = False) -> KittiObject:
    """Parse one label/result line; raise :class:`LabelError` naming file and line on bad input."""
    where = f"{source}:{lineno}"
    fields = raw.split()
    if len(fields) not in (15, 16):
        raise LabelError(f"{where}: expected 15 fields (16 with score), got {len(fields)}: {raw!r}")
    if require_score and len(fields) != 16:
        raise LabelError(f"{where}: result lines need the score as 16th column: {raw!r}")
    try:
        vals = [float(v) for v in fields[1:]]
    except ValueError as e:
        raise LabelError(f"{where}: non-numeric field ({e}): {raw!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise LabelError(f"{where}: NaN/inf in {raw!r}")
    occ = vals[1]
    if occ != int(occ) or int(occ) not in (-1, 0, 1, 2, 3):
        raise LabelError(f"{where}: occlusion must be an integer in -1..3, got {fields[2]!r}")
    if fields[0] not in known_types():
        raise LabelError(f"{where}: unknown object type {fields[0]!r} (KITTI's are {', '.join(KITTI_TYPES)}; "
                         f"{EXTRA_TYPES_ENV}=Type1,Type2 accepts others)")
    if fields[0] != "DontCare" and not all(v > 0 for v in vals[7:10]):
        raise LabelError(f"{where}: {fields[0]} with dimensions h w l = {fields[8]} {fields[9]} {fields[10]}; "
                         "they must be > 0 (only DontCare lines carry -1)")
    return KittiObject(
        type=fields[0],
        truncated=vals[0],
        occluded=int(occ),
        alpha=vals[2],
        bbox=(vals[3], vals[4], vals[5], vals[6]),
        dimensions=(vals[7], vals[8], vals[9]),
        location=(vals[10], vals[11], vals[12]),
        rotation_y=vals[13],
        score=vals[14] if len(vals) == 15 else None,
    )


def read_label_file(path: str | Path, require_score: bool = False) -> list[KittiObject]:
    """All objects of a label or result file (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    objs = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        if raw.strip():
            objs.append(parse_line(raw, str(path), lineno, require_score))
    return objs


def write_label_file(path: str | Path, objs: list[KittiObject]) -> None:
    Path(path).write_text("".join(o.to_line() + "\n" for o in objs))


@dataclass
class LabelArrays:
    """Column arrays of a frame's objects (what the evaluator and the dataset consume)."""

    name: np.ndarray  # (N,) str
    truncated: np.ndarray  # (N,)
    occluded: np.ndarray  # (N,) int
    alpha: np.ndarray  # (N,)
    bbox: np.ndarray  # (N,4)
    dimensions: np.ndarray  # (N,3) h w l
    location: np.ndarray  # (N,3)
    rotation_y: np.ndarray  # (N,)
    score: np.ndarray  # (N,) (zeros for ground truth)

    def __len__(self) -> int:
        return len(self.name)

    def subset(self, mask: np.ndarray) -> "LabelArrays":
        return LabelArrays(**{k: v[mask] for k, v in self.__dict__.items()})

    @property
    def boxes_camera(self) -> np.ndarray:
        """(N,7) camera boxes ``x y z l h w ry`` as OpenPCDet's ``boxes3d_camera`` (l h w order)."""
        h, w, l = self.dimensions.T
        return np.stack([*self.location.T, l, h, w, self.rotation_y], axis=1)


def to_arrays(objs: list[KittiObject]) -> LabelArrays:
    n = len(objs)
    return LabelArrays(
        name=np.array([o.type for o in objs], dtype=object).astype(str) if n else np.zeros(0, dtype="<U16"),
        truncated=np.array([o.truncated for o in objs], dtype=np.float64).reshape(n),
        occluded=np.array([o.occluded for o in objs], dtype=np.int64).reshape(n),
        alpha=np.array([o.alpha for o in objs], dtype=np.float64).reshape(n),
        bbox=np.array([o.bbox for o in objs], dtype=np.float64).reshape(n, 4),
        dimensions=np.array([o.dimensions for o in objs], dtype=np.float64).reshape(n, 3),
        location=np.array([o.location for o in objs], dtype=np.float64).reshape(n, 3),
        rotation_y=np.array([o.rotation_y for o in objs], dtype=np.float64).reshape(n),
        score=np.array([0.0 if o.score is None else o.score for o in objs], dtype=np.float64).reshape(n),
    )
