"""A detector assembled from registered parts (models/registry.py): VFE -> (sparse 3D backbone ->
height compression | pillar scatter) -> BEV backbone -> dense head [-> RoI head]; losses and
post-processed predictions. ``build_detector(cfg)`` builds the parts its config names."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.models.backbone2d import BEVBackbone2D  # importing it registers the BEV backbones
from clean_deploy.models.backbone3d import SparseBackbone3D  # ... and this the 3D backbones
from clean_deploy.models.bev import HeightCompression, PointPillarScatter
from clean_deploy.models.config import DetectorConfig
from clean_deploy.models.heads import DenseHead, build_dense_head
from clean_deploy.models.postprocess import postprocess
from clean_deploy.models.registry import BACKBONES_3D, BEV_BACKBONES
from clean_deploy.models.roi.roi_head import RoIHead
from clean_deploy.models.vfe import VFE, build_vfe


def _feature_stride(backbone3d: SparseBackbone3D | None, backbone2d: BEVBackbone2D) -> float:
    """Cells of the input grid per dense-head output cell."""
    return (backbone3d.stage_strides[-1] if backbone3d is not None else 1) * backbone2d.out_stride


class Detector(nn.Module):
    """One-stage (SECOND, PointPillars, CenterPoint) or two-stage (Voxel R-CNN) detector from parts.

    ``forward(batch)`` returns a dict of intermediate outputs (what distillation and pruning read):
    ``voxel_features``, ``sparse`` (multi-scale sparse tensors), ``bev`` (BEV input map),
    ``spatial_features_2d`` (BEV backbone output), ``dense`` (raw head outputs), ``roi`` (second
    stage, teacher only). ``loss(out, batch)`` and ``predict(out)`` consume it. The module names
    (``vfe``, ``backbone3d``, ``to_bev``, ``backbone2d``, ``dense_head``, ``roi_head``) are the
    state-dict prefixes.
    """

    def __init__(self, cfg: DetectorConfig, *, vfe: VFE, backbone3d: SparseBackbone3D | None, to_bev: nn.Module,
                 backbone2d: BEVBackbone2D, dense_head: DenseHead, roi_head: RoIHead | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.vfe = vfe
        self.backbone3d = backbone3d
        self.to_bev = to_bev
        self.backbone2d = backbone2d
        self.dense_head = dense_head
        self.roi_head = roi_head
        self.feature_stride = _feature_stride(backbone3d, backbone2d)

    @property
    def is_two_stage(self) -> bool:
        return self.roi_head is not None

    def forward(self, batch: dict) -> dict:
        bs = int(batch["batch_size"])
        coords = batch["voxel_coords"]
        vf = self.vfe(batch["voxels"], batch["voxel_num_points"], coords)
        out: dict = {"voxel_features": vf}
        if self.backbone3d is not None:
            sp = self.backbone3d(vf, coords, bs, rulebooks=batch.get("rulebooks"))
            out["sparse"] = sp
            bev = self.to_bev(sp["encoded"])
        else:
            bev = self.to_bev(vf, coords, bs)
        out["bev"] = bev
        feats = self.backbone2d(bev)
        out["spatial_features_2d"] = feats
        out["dense"] = self.dense_head(feats)
        if self.roi_head is not None:
            decoded = self.dense_head.decode(out["dense"])
            gt = batch.get("gt_boxes") if self.training else None
            out["roi"] = self.roi_head(out["sparse"], decoded, gt)
        return out

    def loss(self, out: dict, batch: dict, dense_targets: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Total training loss and its named parts (floats, for logging)."""
        parts = self.dense_head.loss(out["dense"], batch["gt_boxes"], dense_targets)
        if self.roi_head is not None:
            parts.update(self.roi_head.loss(out["roi"]))
        total = sum(v for k, v in parts.items() if k.startswith("loss"))
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def decode(self, out: dict, first_stage: bool = False) -> dict:
        """Final-stage candidates before NMS (refined boxes for two-stage detectors). ``first_stage``:
        a two-stage detector's dense-head boxes, without the RoI head's refinement."""
        if first_stage and self.roi_head is None:
            raise ValueError(f"{self.cfg.name}: first-stage boxes exist only for two-stage detectors (no RoI head)")
        if self.roi_head is not None and not first_stage:
            return self.roi_head.decode(out["roi"])
        return self.dense_head.decode(out["dense"])

    @torch.no_grad()
    def predict(self, out: dict, first_stage: bool = False) -> list[dict]:
        """Post-processed detections per frame (LiDAR boxes, scores, 0-based labels); ``first_stage``:
        see :meth:`decode`."""
        return postprocess(self.decode(out, first_stage), self.cfg.post)


def build_detector(cfg: DetectorConfig) -> Detector:
    """The detector of ``cfg``, each part built from the class its section names."""
    grid = cfg.grid_size
    vfe = build_vfe(cfg.vfe, cfg.voxel_size, cfg.point_cloud_range)
    if cfg.backbone3d is not None:
        backbone3d = BACKBONES_3D.get(cfg.backbone3d.type)(cfg.backbone3d, vfe.out_channels, grid)
        to_bev: nn.Module = HeightCompression(backbone3d.out_channels, backbone3d.out_shape_z)
    else:
        backbone3d = None
        to_bev = PointPillarScatter(vfe.out_channels, grid)
    backbone2d = BEV_BACKBONES.get(cfg.backbone2d.type)(cfg.backbone2d, to_bev.out_channels)
    dense_head = build_dense_head(cfg, backbone2d.out_channels, _feature_stride(backbone3d, backbone2d))
    roi_head = (RoIHead(cfg.roi_head, backbone3d.roi_scales(cfg.voxel_size), cfg.point_cloud_range)
                if cfg.roi_head is not None else None)
    return Detector(cfg, vfe=vfe, backbone3d=backbone3d, to_bev=to_bev, backbone2d=backbone2d,
                    dense_head=dense_head, roi_head=roi_head)
