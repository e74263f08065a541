"""Voxel feature encoders: mean of the points in a voxel (SECOND) and PointNet pillars (PointPillars)."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.models.config import VFEConfig
from clean_deploy.models.registry import VFES


class VFE(nn.Module):
    """Contract of a voxel feature encoder: ``forward(voxels (V,T,F), num_points (V,), coords (V,4))
    -> (V, out_channels)``; ``config_with_widths()`` describes the modules' current widths (after
    pruning) as its config section."""

    out_channels: int

    def config_with_widths(self, cfg: VFEConfig) -> VFEConfig:
        return cfg


@VFES.register("mean")
class MeanVFE(VFE):
    """Average of the (up to ``max_points``) points of each voxel -> (V, C)."""

    def __init__(self, cfg: VFEConfig, voxel_size, point_cloud_range) -> None:
        super().__init__()
        self.out_channels = cfg.num_point_features

    def forward(self, voxels: torch.Tensor, num_points: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        total = voxels.sum(1)
        n = num_points.clamp(min=1).to(voxels.dtype)[:, None]
        return total / n


@VFES.register("pillar")
class PillarVFE(VFE):
    """PointNet over pillar points augmented with offsets to the points' mean and the pillar
    centre (PointPillars), max-pooled over the points of each pillar."""

    def __init__(self, cfg: VFEConfig, voxel_size, point_cloud_range) -> None:
        super().__init__()
        c_in = cfg.num_point_features + 6 + (1 if cfg.pillar_with_distance else 0)
        self.with_distance = cfg.pillar_with_distance
        layers = []
        for c_out in cfg.pillar_filters:
            layers.append(nn.Sequential(nn.Linear(c_in, c_out, bias=False),
                                        nn.BatchNorm1d(c_out, eps=1e-3), nn.ReLU()))
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.out_channels = c_in
        self.register_buffer("voxel_size", torch.tensor(voxel_size, dtype=torch.float32), persistent=False)
        self.register_buffer("pc_min", torch.tensor(point_cloud_range[:3], dtype=torch.float32), persistent=False)

    def config_with_widths(self, cfg: VFEConfig) -> VFEConfig:
        return cfg.replace(pillar_filters=tuple(layer[0].out_features for layer in self.layers))

    def forward(self, voxels: torch.Tensor, num_points: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        v, p, _ = voxels.shape
        mask = torch.arange(p, device=voxels.device)[None, :] < num_points[:, None]  # (V,P)
        maskf = mask.to(voxels.dtype)[..., None]
        xyz = voxels[..., :3]
        mean = (xyz * maskf).sum(1, keepdim=True) / num_points.clamp(min=1).to(voxels.dtype)[:, None, None]
        # coords are (b, z, y, x); pillar centre in metres
        centre = (coords[:, [3, 2, 1]].to(voxels.dtype) + 0.5) * self.voxel_size + self.pc_min
        feats = [voxels, xyz - mean, xyz - centre[:, None, :]]
        if self.with_distance:
            feats.append(xyz.norm(dim=-1, keepdim=True))
        x = torch.cat(feats, -1) * maskf
        for layer in self.layers:
            lin, bn, act = layer
            y = lin(x)  # (V,P,C)
            # BN over all point slots as OpenPCDet does; padded slots are zeroed after the ReLU so
            # they never win the max (outputs are >= 0)
            y = act(bn(y.reshape(v * p, -1)).reshape(v, p, -1)) * maskf
            x = y
        return x.max(1).values


def build_vfe(cfg: VFEConfig, voxel_size, point_cloud_range) -> VFE:
    return VFES.get(cfg.type)(cfg, voxel_size, point_cloud_range)
