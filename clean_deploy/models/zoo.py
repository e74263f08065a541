"""Named detector configs at two scales (KITTI standard; synthetic-fast for 2-core CPU training)
and width multipliers: ``get_config("centerpoint_fast@0.5x")``."""
from __future__ import annotations

import re
from typing import Callable

from clean_deploy.models.config import (Backbone2DConfig, Backbone3DConfig, DetectorConfig, PostProcessConfig,
                                        RoIHeadConfig, VFEConfig)
from clean_deploy.kitti import KITTI_POINT_CLOUD_RANGE
from clean_deploy.models.heads.center_head import CenterHeadConfig

KITTI_RANGE = KITTI_POINT_CLOUD_RANGE
PILLAR_RANGE = (0.0, -39.68, -3.0, 69.12, 39.68, 1.0)
#: synthetic-fast: the KITTI range at coarser voxels (0.1 x 0.1 x 0.2 m); the camera FOV covers it
FAST_RANGE = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
FAST_VOXEL = (0.1, 0.1, 0.2)
FAST_PILLAR = (0.2, 0.2, 4.0)


# ------------------------------------------------------------------------ KITTI
def second() -> DetectorConfig:
    return DetectorConfig(name="second", point_cloud_range=KITTI_RANGE, voxel_size=(0.05, 0.05, 0.1))


def pointpillars() -> DetectorConfig:
    return DetectorConfig(
        name="pointpillars", point_cloud_range=PILLAR_RANGE, voxel_size=(0.16, 0.16, 4.0),
        max_points_per_voxel=32, vfe=VFEConfig(type="pillar", pillar_filters=(64,)), backbone3d=None,
        backbone2d=Backbone2DConfig(blocks=((64,) * 4, (128,) * 6, (256,) * 6), strides=(2, 2, 2),
                                    up_channels=(128, 128, 128), up_strides=(1, 2, 4)))


def centerpoint() -> DetectorConfig:
    return DetectorConfig(name="centerpoint", point_cloud_range=KITTI_RANGE, voxel_size=(0.05, 0.05, 0.1),
                          dense_head=CenterHeadConfig(),
                          post=PostProcessConfig(score_thresh=0.1, nms_thresh=0.01))


def voxel_rcnn() -> DetectorConfig:
    return DetectorConfig(
        name="voxel_rcnn", point_cloud_range=KITTI_RANGE, voxel_size=(0.05, 0.05, 0.1),
        backbone2d=Backbone2DConfig(blocks=((64,) * 5, (128,) * 5), strides=(1, 2), up_channels=(128, 128),
                                    up_strides=(1, 2)),
        roi_head=RoIHeadConfig(pool_layers=("x_conv2", "x_conv3", "x_conv4")),
        post=PostProcessConfig(score_thresh=0.3, nms_thresh=0.1))


# -------------------------------------------------------------- synthetic-fast
def _fast_bev() -> Backbone2DConfig:
    return Backbone2DConfig(blocks=((64,) * 3, (128,) * 3), strides=(1, 2), up_channels=(128, 128),
                            up_strides=(1, 2))


def _fast(cfg: DetectorConfig, **changes) -> DetectorConfig:
    base = dict(name=cfg.name + "_fast", point_cloud_range=FAST_RANGE, voxel_size=FAST_VOXEL,
                max_voxels_train=20000, max_voxels_test=30000)
    if cfg.backbone3d is not None:
        # 20 z voxels (+1): pad the third strided conv so 21 -> 11 -> 6 -> 3 -> 1 z slice remains
        base["backbone3d"] = cfg.backbone3d.replace(paddings=((1, 1, 1), (1, 1, 1), (1, 1, 1)))
    base.update(changes)
    return cfg.replace(**base)


def second_fast() -> DetectorConfig:
    return _fast(second(), backbone2d=_fast_bev())


def pointpillars_fast() -> DetectorConfig:
    return _fast(pointpillars(), voxel_size=FAST_PILLAR, max_points_per_voxel=20,
                 backbone2d=Backbone2DConfig(blocks=((64,) * 3, (128,) * 3, (128,) * 3), strides=(2, 2, 2),
                                             up_channels=(64, 64, 64), up_strides=(1, 2, 4)))


def centerpoint_fast() -> DetectorConfig:
    return _fast(centerpoint(), backbone2d=_fast_bev())


def voxel_rcnn_fast() -> DetectorConfig:
    return _fast(voxel_rcnn(), backbone2d=_fast_bev(),
                 roi_head=RoIHeadConfig(pool_layers=("x_conv3", "x_conv4"), roi_per_image=64,
                                        train_nms_post=128, test_nms_post=64, grid_size=6))


CONFIGS: dict[str, Callable[[], DetectorConfig]] = {
    "second": second, "pointpillars": pointpillars, "centerpoint": centerpoint, "voxel_rcnn": voxel_rcnn,
    "second_fast": second_fast, "pointpillars_fast": pointpillars_fast, "centerpoint_fast": centerpoint_fast,
    "voxel_rcnn_fast": voxel_rcnn_fast,
}

_NAME = re.compile(r"^(?P<base>[a-z_]+)(@(?P<mult>[0-9.]+)x)?(?P<iou>\+iou)?(?P<axis>\+axis)?(?P<up2>\+up2)?$")


def scale_width(cfg: DetectorConfig, mult: float) -> DetectorConfig:
    """All conv widths of the backbones and the VFE times ``mult`` (heads keep their sizes)."""
    vfe = cfg.vfe.replace(pillar_filters=tuple(max(8, int(round(c * mult / 4) * 4)) for c in cfg.vfe.pillar_filters))
    b3 = cfg.backbone3d.scaled(mult) if cfg.backbone3d is not None else None
    return cfg.replace(vfe=vfe, backbone3d=b3, backbone2d=cfg.backbone2d.scaled(mult),
                       dense_head=cfg.dense_head.scaled(mult))


def get_config(name: str) -> DetectorConfig:
    """``NAME[@<mult>x][+iou][+axis][+up2]``: e.g. ``second_fast@0.5x`` (half width),
    ``second_fast@0.5x+iou`` (with the IoU-quality branch the redundancy elimination needs),
    ``centerpoint_fast@0.5x+iou+axis`` (heading learnt as axis + direction) or
    ``centerpoint_fast@0.5x+iou+axis+up2`` (the head predicts on a 2x finer map: 0.4 m cells)."""
    m = _NAME.match(name)
    if not m or m.group("base") not in CONFIGS:
        raise KeyError(f"unknown detector config {name!r}; known: {sorted(CONFIGS)} "
                       "(optionally, in this order: '@0.5x', '+iou', '+axis', '+up2')")
    cfg = CONFIGS[m.group("base")]()
    if m.group("mult"):
        cfg = scale_width(cfg, float(m.group("mult")))
    if m.group("iou"):
        cfg = with_iou_branch(cfg)
    if m.group("axis"):
        cfg = with_axis_heading(cfg, name)
    if m.group("up2"):
        cfg = with_finer_output(cfg, name)
    if m.group("mult") or m.group("iou") or m.group("axis") or m.group("up2"):
        cfg = cfg.replace(name=name)
    return cfg


def with_finer_output(cfg: DetectorConfig, name: str | None = None) -> DetectorConfig:
    """A centre-head detector whose BEV backbone upsamples every block 2x further (``up_strides``
    doubled), so the head predicts on a map of half the stride: 0.4 m cells instead of 0.8 m for the
    ``_fast`` voxel configs, the output stride of OpenPCDet's KITTI CenterPoint. The first
    upsampling block becomes a transposed conv (2x2 kernel) where it was a 1x1 conv, the others'
    kernels double; the head's cost grows with its 4x more cells."""
    dh = cfg.dense_head
    if getattr(dh, "heading", None) is None or cfg.backbone2d is None:
        raise KeyError(f"{name or cfg.name}: '+up2' is for centre-head detectors with a BEV backbone "
                       f"(centerpoint*); {cfg.name} has a {dh.type} head")
    b2 = cfg.backbone2d
    return cfg.replace(backbone2d=b2.replace(up_strides=tuple(2 * s for s in b2.up_strides)))


def with_axis_heading(cfg: DetectorConfig, name: str | None = None) -> DetectorConfig:
    """A centre-head detector that learns its heading as axis + direction (``CenterHeadConfig.heading``),
    the direction logit's loss weighted 0.2 (OpenPCDet's weight of the anchor heads' direction
    classifier)."""
    dh = cfg.dense_head
    if getattr(dh, "heading", None) is None:
        raise KeyError(f"{name or cfg.name}: '+axis' is for centre-head detectors (centerpoint*); "
                       f"{cfg.name} has a {dh.type} head")
    return cfg.replace(dense_head=dh.replace(heading="axis", loss_weights=dh.loss_weights.replace(dir=0.2)))


def with_iou_branch(cfg: DetectorConfig, on: bool = True) -> DetectorConfig:
    """The same detector with the IoU-quality branch of its dense head switched on/off."""
    return cfg.replace(dense_head=cfg.dense_head.replace(iou_branch=on))
