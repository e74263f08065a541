"""Typed configs of the detectors: every part's widths are explicit lists, so a pruned model is
just a config with smaller numbers (saved as JSON inside its checkpoint).

Width multipliers (``scaled``) create the wide teacher and narrow students from one layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from clean_deploy.config import ConfigBase
from clean_deploy.kitti import KITTI_CLASSES, KITTI_POINT_CLOUD_RANGE
from clean_deploy.models.registry import Registry


def _scale(c: int, mult: float, divisor: int = 4, minimum: int = 4) -> int:
    return max(minimum, int(math.ceil(c * mult / divisor) * divisor))


@dataclass
class VFEConfig(ConfigBase):
    """Voxel feature encoder. ``mean``: average of the points (SECOND); ``pillar``: PointNet over
    augmented point features (PointPillars)."""

    type: str = "mean"
    num_point_features: int = 4
    #: pillar VFE: output widths of its linear+BN+ReLU layers
    pillar_filters: tuple[int, ...] = (64,)
    pillar_with_distance: bool = False


@dataclass
class Backbone3DConfig(ConfigBase):
    """SECOND-style sparse 3D backbone (OpenPCDet's ``VoxelBackBone8x``).

    ``stages[i]`` lists the output width of each conv of stage i. Stage 0 is the input SubM conv
    + SubM block (stride 1); stages 1..3 start with a strided regular SparseConv3d (stride
    ``strides[i-1]``) followed by SubM convs. ``out_channels`` is the final (z-collapsing)
    SparseConv3d with kernel (3,1,1), stride (2,1,1).
    """

    #: registered name of the backbone class (models/registry.py BACKBONES_3D)
    type: str = "voxel_8x"
    stages: tuple[tuple[int, ...], ...] = ((16, 16), (32, 32, 32), (64, 64, 64), (64, 64, 64))
    strides: tuple[tuple[int, int, int], ...] = ((2, 2, 2), (2, 2, 2), (2, 2, 2))
    #: padding of the strided conv of stages 1..3 (z, y, x); OpenPCDet uses (0,1,1) for stage 3
    paddings: tuple[tuple[int, int, int], ...] = ((1, 1, 1), (1, 1, 1), (0, 1, 1))
    out_channels: int = 128

    def scaled(self, mult: float) -> "Backbone3DConfig":
        return self.replace(stages=tuple(tuple(_scale(c, mult) for c in s) for s in self.stages),
                            out_channels=_scale(self.out_channels, mult))


@dataclass
class Backbone2DConfig(ConfigBase):
    """BEV backbone with a multi-scale deconvolution neck (OpenPCDet's ``BaseBEVBackbone``).

    ``blocks[i]``: output width of each 3x3 conv of block i (the first has stride
    ``strides[i]``); ``up_channels[i]``/``up_strides[i]``: the transposed conv (stride > 1), 1x1
    conv (stride 1) or strided conv (stride < 1, given as 1/s) bringing block i to the common
    output resolution; outputs are concatenated.
    """

    #: registered name of the backbone class (models/registry.py BEV_BACKBONES)
    type: str = "base_bev"
    blocks: tuple[tuple[int, ...], ...] = ((128,) * 6, (256,) * 6)
    strides: tuple[int, ...] = (1, 2)
    up_channels: tuple[int, ...] = (256, 256)
    up_strides: tuple[float, ...] = (1, 2)

    def scaled(self, mult: float) -> "Backbone2DConfig":
        return self.replace(blocks=tuple(tuple(_scale(c, mult) for c in b) for b in self.blocks),
                            up_channels=tuple(_scale(c, mult) for c in self.up_channels))

    @property
    def out_channels(self) -> int:
        return sum(self.up_channels)


@dataclass
class AnchorClassConfig(ConfigBase):
    """Anchors of one class (OpenPCDet's ``ANCHOR_GENERATOR_CONFIG`` entry)."""

    name: str
    size: tuple[float, float, float]  # l w h
    bottom_height: float
    rotations: tuple[float, ...] = (0.0, math.pi / 2)
    matched_threshold: float = 0.6
    unmatched_threshold: float = 0.45


def kitti_anchor_classes() -> tuple[AnchorClassConfig, ...]:
    return (
        AnchorClassConfig("Car", (3.9, 1.6, 1.56), -1.78, matched_threshold=0.6, unmatched_threshold=0.45),
        AnchorClassConfig("Pedestrian", (0.8, 0.6, 1.73), -0.6, matched_threshold=0.5, unmatched_threshold=0.35),
        AnchorClassConfig("Cyclist", (1.76, 0.6, 1.73), -0.6, matched_threshold=0.5, unmatched_threshold=0.35),
    )


@dataclass
class LossWeights(ConfigBase):
    cls: float = 1.0
    box: float = 2.0
    dir: float = 0.2
    iou: float = 1.0


#: dense-head config classes by ``type`` (filled by :func:`register_head_config`)
HEAD_CONFIGS: Registry = Registry("dense_head.type")


class HeadConfig(ConfigBase):
    """Base of the dense heads' config sections (``DetectorConfig.dense_head``). A subclass is a
    dataclass whose first field is ``type: str = "<name>"`` (its registered name, the head's
    registry key in models/heads), registered with :func:`register_head_config`; a dict is parsed
    into the class its ``type`` names."""

    type: str
    iou_branch: bool

    @classmethod
    def from_dict(cls, d: dict, _where: str | None = None):
        if cls is not HeadConfig:
            return super().from_dict(d, _where)
        where = _where or "dense_head"
        name = d.get("type") if isinstance(d, dict) else None
        if name not in HEAD_CONFIGS.names():
            raise ValueError(f"{where}.type must be one of {HEAD_CONFIGS.names()}, got {name!r}")
        return HEAD_CONFIGS.get(name).from_dict(d, where)

    def __post_init__(self) -> None:
        expected = type(self).__dataclass_fields__["type"].default
        if self.type != expected:
            raise ValueError(f"dense_head.type of {type(self).__name__} must be {expected!r}, got {self.type!r}")

    def scaled(self, mult: float) -> "HeadConfig":
        """The head's config at ``mult`` times the width (``scale_width``); default: unchanged."""
        return self

    def validate(self, det: "DetectorConfig") -> None:
        """Checks against the rest of the detector's config (raises ValueError)."""


def register_head_config(cls):
    """Class decorator: makes a ``HeadConfig`` dataclass parseable by its ``type``."""
    return HEAD_CONFIGS.register(cls.__dataclass_fields__["type"].default)(cls)


@register_head_config
@dataclass
class AnchorHeadConfig(HeadConfig):
    """Multi-class anchor head: focal-loss classification, smooth-L1 residuals, direction bins."""

    type: str = "anchor"
    anchors: tuple[AnchorClassConfig, ...] = field(default_factory=kitti_anchor_classes)
    use_direction_classifier: bool = True
    dir_offset: float = 0.78539
    dir_limit_offset: float = 0.0
    num_dir_bins: int = 2
    #: angle encoded as (cos, sin) differences instead of a plain residual
    encode_angle_by_sincos: bool = False
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    smooth_l1_beta: float = 1.0 / 9.0
    #: per-dimension weights of the box residuals (x y z l w h r)
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    #: IoU-quality branch (predicts the 3D IoU of each decoded box with its target)
    iou_branch: bool = False

    def validate(self, det: "DetectorConfig") -> None:
        names = tuple(a.name for a in self.anchors)
        if names != tuple(det.class_names):
            raise ValueError(f"detector {det.name!r}: anchor classes {names} != class_names {det.class_names}")


@dataclass
class RoIHeadConfig(ConfigBase):
    """Voxel R-CNN-like second stage: grid points in each proposal pool multi-scale sparse features
    by voxel query; an MLP predicts an IoU-guided confidence and a box refinement."""

    #: proposals: top ``nms_pre`` first-stage boxes, NMS at ``nms_thresh``, keep ``nms_post``
    train_nms_pre: int = 2048
    train_nms_post: int = 256
    test_nms_pre: int = 1024
    test_nms_post: int = 100
    proposal_nms_thresh: float = 0.8
    #: RoI sampling for training (Voxel R-CNN: 128 RoIs, fg 50%)
    roi_per_image: int = 64
    fg_ratio: float = 0.5
    reg_fg_thresh: float = 0.55
    cls_fg_thresh: float = 0.75
    cls_bg_thresh: float = 0.25
    hard_bg_ratio: float = 0.8
    cls_bg_thresh_lo: float = 0.1
    #: grid points per RoI side
    grid_size: int = 6
    #: which backbone scales are pooled (names of the sparse backbone's outputs)
    pool_layers: tuple[str, ...] = ("x_conv3", "x_conv4")
    #: voxel-query neighbourhood half-size in voxels (z, y, x) at each pooled scale
    query_range: tuple[int, int, int] = (1, 1, 1)
    pool_channels: int = 32
    shared_fc: tuple[int, ...] = (256, 256)
    head_fc: tuple[int, ...] = (256,)
    dropout: float = 0.3
    loss_weights: LossWeights = field(default_factory=lambda: LossWeights(cls=1.0, box=1.0, dir=1.0, iou=0.0))
    #: weight of the corner loss on refined boxes
    corner_weight: float = 1.0


@dataclass
class RedundancyConfig(ConfigBase):
    """IoU-aware redundancy elimination (CLEAN; algorithm in :mod:`clean_deploy.models.redundancy`).
    Per-class tuples follow ``class_names``."""

    #: rescoring exponent b per class: ``score^(1-b) * iou^b`` (0 = plain classification score)
    beta: tuple[float, ...] = (0.68, 0.71, 0.65)
    #: minimum rescored score
    score_thresh: float = 0.1
    #: minimum predicted IoU per class (removes low-quality false positives); 0 disables
    min_iou: tuple[float, ...] = (0.1, 0.1, 0.1)
    #: same-class BEV IoU above which the lower-quality box is removed
    nms_thresh: tuple[float, ...] = (0.01, 0.01, 0.01)
    #: BEV IoU above which a box of another class is removed (>= 1 disables)
    cross_class_thresh: float = 0.3
    pre_max: int = 1000
    max_output: int = 100


@dataclass
class PostProcessConfig(ConfigBase):
    """Decode -> score threshold -> class-aware rotated NMS (shared by all detectors), or the
    IoU-aware redundancy elimination when ``redundancy`` is set (needs the IoU branch)."""

    score_thresh: float = 0.1
    nms_thresh: float = 0.01
    nms_pre_max: int = 4096
    nms_post_max: int = 500
    redundancy: RedundancyConfig | None = None


@dataclass
class DetectorConfig(ConfigBase):
    """A whole detector: input geometry, parts and post-processing."""

    name: str = "second"
    class_names: tuple[str, ...] = KITTI_CLASSES
    point_cloud_range: tuple[float, ...] = KITTI_POINT_CLOUD_RANGE
    voxel_size: tuple[float, float, float] = (0.05, 0.05, 0.1)
    max_points_per_voxel: int = 5
    max_voxels_train: int = 16000
    max_voxels_test: int = 40000
    vfe: VFEConfig = field(default_factory=VFEConfig)
    #: ``None`` for pillar detectors (PointPillars: VFE -> scatter -> 2D backbone)
    backbone3d: Backbone3DConfig | None = field(default_factory=Backbone3DConfig)
    backbone2d: Backbone2DConfig = field(default_factory=Backbone2DConfig)
    #: the dense head's section; its ``type`` selects the head class (models/heads DENSE_HEADS)
    dense_head: HeadConfig = field(default_factory=AnchorHeadConfig)
    roi_head: RoIHeadConfig | None = None
    post: PostProcessConfig = field(default_factory=PostProcessConfig)

    def __post_init__(self) -> None:
        pcr = self.point_cloud_range
        if len(pcr) != 6 or any(a >= b for a, b in zip(pcr[:3], pcr[3:])):
            raise ValueError(f"detector {self.name!r}: point_cloud_range needs 6 numbers (x y z min, then max) with "
                             f"min < max, got {tuple(pcr)}")
        if len(self.voxel_size) != 3 or any(v <= 0 for v in self.voxel_size):
            raise ValueError(f"detector {self.name!r}: voxel_size needs 3 positive numbers, got {tuple(self.voxel_size)}")
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"detector {self.name!r}: class_names must be unique and non-empty, got {self.class_names}")
        if not isinstance(self.dense_head, HeadConfig):
            raise ValueError(f"detector {self.name!r}: dense_head must be a registered head config "
                             f"{HEAD_CONFIGS.names()}, got {type(self.dense_head).__name__}")
        if self.roi_head is not None and self.backbone3d is None:
            raise ValueError(f"detector {self.name!r}: the RoI head pools sparse 3D features; it needs backbone3d")
        self.dense_head.validate(self)

    @classmethod
    def from_dict(cls, d: dict, _where: str | None = None) -> "DetectorConfig":
        """Also reads configs written before ``dense_head`` (one of the sections ``anchor_head`` /
        ``center_head`` set, the other null), as stored in older checkpoints."""
        legacy = {"anchor_head": "anchor", "center_head": "center"}
        if isinstance(d, dict) and set(legacy) & set(d):
            where = _where or cls.__name__
            d = dict(d)
            sections = {k: d.pop(k) for k in legacy if k in d}
            given = [k for k, v in sections.items() if v is not None]
            if "dense_head" in d or len(given) != 1:
                raise ValueError(f"{where}: a config with the older head sections needs exactly one of "
                                 f"{list(legacy)} set and no dense_head, got {given + (['dense_head'] if 'dense_head' in d else [])}")
            d["dense_head"] = {"type": legacy[given[0]], **sections[given[0]]}
        return super().from_dict(d, _where)

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """(nx, ny, nz) voxels."""
        pcr, vs = self.point_cloud_range, self.voxel_size
        return tuple(int(round((pcr[i + 3] - pcr[i]) / vs[i])) for i in range(3))  # type: ignore[return-value]
