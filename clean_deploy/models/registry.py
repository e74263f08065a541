"""Name -> class registries of a detector's parts (detectron2's style): a config section names its
part's ``type``; ``build_detector`` looks the class up here and assembles the detector from parts.

    VFES          "mean" (SECOND), "pillar" (PointPillars)             models/vfe.py
    BACKBONES_3D  "voxel_8x" (SECOND's sparse VoxelBackBone8x)         models/backbone3d.py
    BEV_BACKBONES "base_bev" (OpenPCDet's BaseBEVBackbone)             models/backbone2d.py
    dense heads   models/heads (DENSE_HEADS, keyed by DetectorConfig.dense_head.type); their config
                  classes: models/config.py HEAD_CONFIGS, a Registry filled by register_head_config

Adding a part: a class implementing its contract (the base class in the part's module), registered
with ``@REGISTRY.register("name")``; its config section selects it with ``type: name``.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes of one kind of part by name."""

    def __init__(self, field: str) -> None:
        self.field = field  # the config key that names the part, for error messages
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.field}: {name!r} is registered twice ({self._entries[name].__name__}, "
                                 f"{cls.__name__})")
            self._entries[name] = cls
            return cls

        return add

    def get(self, name: str) -> type[T]:
        if name not in self._entries:
            raise ValueError(f"{self.field} must be one of {sorted(self._entries)}, got {name!r}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)


VFES: Registry = Registry("vfe.type")
BACKBONES_3D: Registry = Registry("backbone3d.type")
BEV_BACKBONES: Registry = Registry("backbone2d.type")
