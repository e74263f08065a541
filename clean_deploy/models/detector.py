"""A detector composed from its config: VFE -> (sparse 3D backbone -> height compression | pillar
scatter) -> BEV backbone -> dense head [-> RoI head]; losses and post-processed predictions."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.models.backbone2d import BEVBackbone
from clean_deploy.models.backbone3d import VoxelBackbone8x
from clean_deploy.models.bev import HeightCompression, PointPillarScatter
from clean_deploy.models.config import DetectorConfig
from clean_deploy.models.heads import DenseHead, build_dense_head
from clean_deploy.models.postprocess import postprocess
from clean_deploy.models.roi.roi_head import RoIHead
from clean_deploy.models.vfe import build_vfe


class Detector(nn.Module):
    """One-stage (SECOND, PointPillars, CenterPoint) or two-stage (Voxel R-CNN) detector.

    ``forward(batch)`` returns a dict of intermediate outputs (what distillation and pruning read):
    ``voxel_features``, ``sparse`` (multi-scale sparse tensors), ``bev`` (BEV input map),
    ``spatial_features_2d`` (BEV backbone output), ``dense`` (raw head outputs), ``roi`` (second
    stage, teacher only). ``loss(out, batch)`` and ``predict(out)`` consume it.
    """

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        grid = cfg.grid_size
        self.vfe = build_vfe(cfg.vfe, cfg.voxel_size, cfg.point_cloud_range)
        if cfg.backbone3d is not None:
            self.backbone3d = VoxelBackbone8x(cfg.backbone3d, self.vfe.out_channels, grid)
            self.to_bev = HeightCompression(self.backbone3d.out_channels, self.backbone3d.out_shape_z)
            bev_stride = self.backbone3d.stage_strides[-1]
        else:
            self.backbone3d = None
            self.to_bev = PointPillarScatter(self.vfe.out_channels, grid)
            bev_stride = 1
        self.backbone2d = BEVBackbone(cfg.backbone2d, self.to_bev.out_channels)
        self.feature_stride = bev_stride * self.backbone2d.out_stride
        self.dense_head: DenseHead = build_dense_head(cfg, self.backbone2d.out_channels, self.feature_stride)
        self.roi_head = None
        if cfg.roi_head is not None:
            scales = {}
            vs = cfg.voxel_size
            down = [1, 1, 1]  # x, y, z downsampling of each stage
            for i, ch in enumerate(self.backbone3d.stage_channels):
                if i > 0:
                    s = cfg.backbone3d.strides[i - 1]
                    down = [down[0] * s[2], down[1] * s[1], down[2] * s[0]]
                scales[f"x_conv{i + 1}"] = (ch, (vs[0] * down[0], vs[1] * down[1], vs[2] * down[2]))
            self.roi_head = RoIHead(cfg.roi_head, scales, cfg.point_cloud_range)

    @property
    def is_two_stage(self) -> bool:
        return self.roi_head is not None

    def forward(self, batch: dict) -> dict:
        bs = int(batch["batch_size"])
        coords = batch["voxel_coords"]
        vf = self.vfe(batch["voxels"], batch["voxel_num_points"], coords)
        out: dict = {"voxel_features": vf}
        if self.backbone3d is not None:
            sp = self.backbone3d(vf, coords, bs)
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

    def decode(self, out: dict) -> dict:
        """Final-stage candidates before NMS (refined boxes for two-stage detectors)."""
        if self.roi_head is not None:
            return self.roi_head.decode(out["roi"])
        return self.dense_head.decode(out["dense"])

    @torch.no_grad()
    def predict(self, out: dict) -> list[dict]:
        """Post-processed detections per frame (LiDAR boxes, scores, 0-based labels)."""
        return postprocess(self.decode(out), self.cfg.post)


def build_detector(cfg: DetectorConfig) -> Detector:
    return Detector(cfg)
