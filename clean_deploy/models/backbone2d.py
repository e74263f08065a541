"""BEV 2D backbone: strided conv blocks and a multi-scale (de)convolution neck, concatenated."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.models.config import Backbone2DConfig
from clean_deploy.models.registry import BEV_BACKBONES


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3), nn.ReLU())


class BEVBackbone2D(nn.Module):
    """Contract of a BEV backbone: ``forward((N, in_channels, H, W)) -> (N, out_channels, H/s, W/s)``
    with ``out_stride`` s; ``in_channels`` of the BEV map it reads; ``config_with_widths(cfg)``: the
    config section describing the current (possibly pruned) widths."""

    out_channels: int
    out_stride: float

    @property
    def in_channels(self) -> int:
        raise NotImplementedError

    def config_with_widths(self, cfg: Backbone2DConfig) -> Backbone2DConfig:
        raise NotImplementedError


@BEV_BACKBONES.register("base_bev")
class BEVBackbone(BEVBackbone2D):
    """OpenPCDet's ``BaseBEVBackbone`` with explicit per-layer widths (so it can be pruned): blocks of
    3x3 convs (``blocks.i.j``, conv+BN+ReLU), each brought to the output resolution by a deblock
    (``deblocks.i``); the deblocks' outputs are concatenated."""

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

    def config_with_widths(self, cfg: Backbone2DConfig) -> Backbone2DConfig:
        return cfg.replace(blocks=tuple(tuple(layer[0].out_channels for layer in block) for block in self.blocks),
                           up_channels=tuple(d[0].out_channels for d in self.deblocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, 1) if len(ups) > 1 else ups[0]
