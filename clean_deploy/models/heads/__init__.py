"""Dense detection heads (anchor, center) with an optional IoU-quality branch, behind one
contract (:class:`~clean_deploy.models.heads.base.DenseHead`) and registered by name.

``DENSE_HEADS`` maps a head's name to the :class:`DetectorConfig` section that configures it and
its class; the detector builds the one head whose section is set. Adding a head: its module (a
``DenseHead`` subclass with its config dataclass), one line here and its section in
``DetectorConfig`` (see docs/extending.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from clean_deploy.models.heads.anchor_head import AnchorHead
from clean_deploy.models.heads.base import DenseHead
from clean_deploy.models.heads.center_head import CenterHead


@dataclass(frozen=True)
class HeadEntry:
    config_field: str  # the DetectorConfig section of this head
    head: type[DenseHead]


DENSE_HEADS: dict[str, HeadEntry] = {
    "anchor": HeadEntry("anchor_head", AnchorHead),
    "center": HeadEntry("center_head", CenterHead),
}


def build_dense_head(det_cfg, in_channels: int, feature_stride: float) -> DenseHead:
    """The registered head of the one dense-head section set in ``det_cfg`` (validated there)."""
    section = det_cfg.dense_head_section
    entry = next(e for e in DENSE_HEADS.values() if e.config_field == section)
    return entry.head.from_config(getattr(det_cfg, section), in_channels, det_cfg, feature_stride)


__all__ = ["DENSE_HEADS", "DenseHead", "HeadEntry", "build_dense_head"]
