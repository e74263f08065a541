"""From 3D to a BEV image: height compression of sparse features and pillar scattering."""
from __future__ import annotations

import torch
from torch import nn


class HeightCompression(nn.Module):
    """Dense (N, C, D, H, W) sparse output -> (N, C*D, H, W) BEV features."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.out_channels = channels * depth

    def forward(self, encoded) -> torch.Tensor:
        dense = encoded.dense()
        n, c, d, h, w = dense.shape
        return dense.view(n, c * d, h, w)


class PointPillarScatter(nn.Module):
    """Scatter pillar features (V, C) at coords (b, 0, y, x) into a (N, C, ny, nx) BEV image."""

    def __init__(self, channels: int, grid_size) -> None:
        super().__init__()
        self.nx, self.ny, _ = grid_size
        self.out_channels = channels

    def forward(self, pillar_features: torch.Tensor, coords: torch.Tensor, batch_size: int) -> torch.Tensor:
        c = pillar_features.shape[1]
        canvas = pillar_features.new_zeros(batch_size * self.ny * self.nx, c)
        flat = coords[:, 0].long() * (self.ny * self.nx) + coords[:, 2].long() * self.nx + coords[:, 3].long()
        canvas = canvas.index_copy(0, flat, pillar_features)
        return canvas.view(batch_size, self.ny, self.nx, c).permute(0, 3, 1, 2).contiguous()
