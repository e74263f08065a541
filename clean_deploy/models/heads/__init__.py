"""Dense detection heads (anchor, center) with an optional IoU-quality branch, behind one
contract (:class:`~clean_deploy.models.heads.base.DenseHead`) and registered by name.

``DENSE_HEADS`` maps a head's name (its config section's ``type`` and the exported node's
``head_type``) to its class; ``build_dense_head`` builds the head that ``DetectorConfig.dense_head``
names. Adding a head: one module (a ``DenseHead`` subclass and its config, a ``HeadConfig`` dataclass
registered with ``register_head_config``) and one line here (see docs/extending.md).
"""
from __future__ import annotations

from clean_deploy.models.heads.anchor_head import AnchorHead
from clean_deploy.models.heads.base import DenseHead
from clean_deploy.models.heads.center_head import CenterHead

DENSE_HEADS: dict[str, type[DenseHead]] = {
    "anchor": AnchorHead,
    "center": CenterHead,
}


def build_dense_head(det_cfg, in_channels: int, feature_stride: float) -> DenseHead:
    """The registered head of ``det_cfg.dense_head.type``."""
    head_cfg = det_cfg.dense_head
    if head_cfg.type not in DENSE_HEADS:
        raise ValueError(f"dense_head.type must be one of {sorted(DENSE_HEADS)}, got {head_cfg.type!r}")
    return DENSE_HEADS[head_cfg.type].from_config(head_cfg, in_channels, det_cfg, feature_stride)


__all__ = ["DENSE_HEADS", "DenseHead", "build_dense_head"]
