"""Typed configuration dataclasses: the project's one place for defaults, by section.

Every config round-trips through plain dicts/JSON (``to_dict``/``from_dict``/``to_json``/
``from_json``) because checkpoints store their config as JSON. Sections so far:

* data       -- :class:`DataConfig` (dataset root, splits, FOV, label filters)
* augment    -- :class:`AugmentConfig` with :class:`GTSamplingConfig`
* experiment -- :class:`ExperimentConfig` bundling the two; the geometry (range, voxels, classes)
  is the detector's (``clean_deploy.models.config.DetectorConfig``) and nowhere else
* train      -- :class:`TrainConfig`

``from_dict`` is strict: unknown keys raise ``ValueError`` naming the key and the section, so a
typo in a JSON file fails loudly instead of silently using a default.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound="ConfigBase")


# ----------------------------------------------------------------------------- base
def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def _from_plain(tp: Any, value: Any, where: str) -> Any:
    """Convert a JSON value to the annotated type ``tp`` (dataclasses, tuples, dicts, optionals)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _from_plain(args[0], value, where)
        return value
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        if not isinstance(value, dict):
            raise ValueError(
                f"{where}: expected a dict for {tp.__name__}, got {type(value).__name__}")
        return tp.from_dict(value, _where=where)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v, where) for v in value)
        return tuple(_from_plain(a, v, where) for a, v in zip(args, value))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        return {_from_plain(kt, k, where): _from_plain(vt, v, where) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # scalars must have their type: a "false" string for a bool field would be silently true
    if tp in (bool, int, float, str) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ValueError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


@dataclass
class ConfigBase:
    """Shared dict/JSON round-trip for config sections."""

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any], _where: str | None = None) -> T:
        where = _where or cls.__name__
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{where}: unknown config keys {unknown} (known: {sorted(names)})")
        kwargs = {k: _from_plain(hints[k], v, f"{where}.{k}") for k, v in d.items()}
        return cls(**kwargs)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- data
@dataclass
class DataConfig(ConfigBase):
    """Where the KITTI-format data lives, its splits and the label/point filters. The geometry (range,
    voxels, classes) is the detector's (``DetectorConfig``): the dataset takes it from there."""

    root: str = "data/kitti"
    train_split: str = "train"
    val_split: str = "val"
    #: keep only points projecting into camera 2's image with positive depth (OpenPCDet's
    #: ``FOV_POINTS_ONLY``)
    fov_only: bool = True
    #: (H, W) used when a frame has no ``image_2/ID.png`` to read its size from
    default_image_shape: tuple[int, int] = (375, 1242)
    #: training labels: drop boxes with fewer LiDAR points inside (0 disables)
    min_points_in_gt: int = 0
    #: training labels: drop boxes whose KITTI difficulty is listed here (e.g. ``(-1,)``)
    drop_difficulties: tuple[int, ...] = ()
    #: what to do with NaN/inf points in a ``.bin``: ``"raise"`` or ``"drop"``
    nan_policy: str = "raise"
    #: ground-truth database file (``.npz``); built from ``train_split`` and saved there when it
    #: does not exist; ``None`` builds it in memory when GT sampling is enabled
    gt_database_path: str | None = None

    def __post_init__(self) -> None:
        if self.nan_policy not in ("raise", "drop"):
            raise ValueError(f"nan_policy must be 'raise' or 'drop', got {self.nan_policy!r}")


# -------------------------------------------------------------------------- augment
@dataclass
class GTSamplingConfig(ConfigBase):
    """Ground-truth database sampling (OpenPCDet's ``gt_sampling``)."""

    enabled: bool = True
    #: sample until a frame holds this many objects of the class ("Car:15" in OpenPCDet)
    sample_counts: dict[str, int] = field(
        default_factory=lambda: {"Car": 15, "Pedestrian": 10, "Cyclist": 10})
    #: database objects with fewer points are never sampled
    min_points: int = 5
    #: database objects of these KITTI difficulties are never sampled (-1 = unknown level)
    drop_difficulties: tuple[int, ...] = (-1,)
    #: scene points inside pasted boxes enlarged by (dl, dw, dh) are removed
    remove_extra_width: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class AugmentConfig(ConfigBase):
    """Training-time augmentation, applied in this order: gt_sampling, flip, rotation, scaling."""

    gt_sampling: GTSamplingConfig = field(default_factory=GTSamplingConfig)
    #: flip along the x axis (y -> -y, yaw -> -yaw) with probability 0.5
    random_flip_x: bool = True
    #: uniform rotation angle range about z (radians); ``None`` disables
    global_rotation: tuple[float, float] | None = (-math.pi / 4, math.pi / 4)
    #: uniform scale factor range; ``None`` disables
    global_scaling: tuple[float, float] | None = (0.95, 1.05)


# ---------------------------------------------------------------------------- train
@dataclass
class TrainConfig(ConfigBase):
    """Optimisation as OpenPCDet trains KITTI: AdamW + one-cycle LR (momentum cycled inversely),
    gradient clipping; fixed seeds; checkpoints every epoch (and every ``ckpt_every_steps``)."""

    epochs: int = 80
    batch_size: int = 4
    lr: float = 0.003
    weight_decay: float = 0.01
    #: one-cycle: warm-up fraction, initial lr = lr / div_factor, final = initial / final_div_factor
    pct_start: float = 0.4
    div_factor: float = 10.0
    final_div_factor: float = 1e4
    moms: tuple[float, float] = (0.95, 0.85)
    grad_clip: float = 10.0
    seed: int = 0
    num_workers: int = 2
    ckpt_every_steps: int = 0
    #: "auto" (CUDA when available), "cpu" or "cuda"
    device: str = "auto"


# ----------------------------------------------------------------------- experiment
@dataclass
class ExperimentConfig(ConfigBase):
    """The data side of a run: where the data is and how training augments it. Range, voxels and
    classes are the detector's (``DetectorConfig``, given to the dataset beside this), so they
    exist once."""

    name: str = "kitti"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# ------------------------------------------------------------------------------ grid
def grid_size(point_cloud_range: tuple[float, ...] | list[float],
              voxel_size: tuple[float, ...] | list[float]) -> tuple[int, int, int]:
    """Voxel grid size (nx, ny, nz) as spconv computes it: ``round((max - min) / size)``."""
    pcr = [float(v) for v in point_cloud_range]
    nx, ny, nz = (int(round((pcr[i + 3] - pcr[i]) / float(voxel_size[i]))) for i in range(3))
    return nx, ny, nz
