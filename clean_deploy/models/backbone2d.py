"""BEV 2D backbone: strided conv blocks and a multi-scale (de)convolution neck, concatenated."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.models.config import Backbone2DConfig


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3), nn.ReLU())


class BEVBackbone(nn.Module):
    """OpenPCDet's ``BaseBEVBackbone`` with explicit per-layer widths (so it can be pruned)."""

    def __init__(self, cfg: Backbone2DConfig, in_channels: int) -> None:
        super().__init__()
        if not (len(cfg.blocks) == len(cfg.strides) == len(cfg.up_channels) == len(cfg.up_strides)):
            raise ValueError("backbone2d: blocks, strides, up_channels and up_strides need equal lengths")
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        c = in_channels
        for widths, stride, up_c, up_s in zip(cfg.blocks, cfg.strides, cfg.up_channels, cfg.up_strides):
            layers = []
            for j, w in enumerate(widths):
                layers.append(conv_bn_relu(c, w, stride if j == 0 else 1))
                c = w
            self.blocks.append(nn.Sequential(*layers))
            if up_s >= 1:
                s = int(round(up_s))
                up = nn.ConvTranspose2d(c, up_c, s, stride=s, bias=False) if s > 1 else nn.Conv2d(c, up_c, 1, bias=False)
            else:
                s = int(round(1 / up_s))
                up = nn.Conv2d(c, up_c, s, stride=s, bias=False)
            self.deblocks.append(nn.Sequential(up, nn.BatchNorm2d(up_c, eps=1e-3), nn.ReLU()))
        self.out_channels = sum(cfg.up_channels)
        # output stride relative to the input BEV map
        self.out_stride = cfg.strides[0] / cfg.up_strides[0]

    @property
    def in_channels(self) -> int:
        """Channels of the BEV map it reads (the first conv's input; pruning may change it)."""
        return self.blocks[0][0][0].in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, 1) if len(ups) > 1 else ups[0]
