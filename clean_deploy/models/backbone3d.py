"""SECOND-style sparse 3D backbone (VoxelBackBone8x): SubMConv3d/SparseConv3d blocks with BN+ReLU,
multi-scale sparse outputs for the RoI head and a z-collapsing output for the BEV map."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.models.config import Backbone3DConfig
from clean_deploy.models.sparse import SparseBlock, SparseConv3d, SubMConv3d, require_spconv, spconv


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm1d(c, eps=1e-3), nn.ReLU()]


def sparse_conv_block(c_in: int, c_out: int, kernel, stride=1, padding=0, subm: bool = True,
                      indice_key: str | None = None):
    """conv (no bias) + BN + ReLU as one SparseSequential; the unit pruning works on."""
    conv_cls = SubMConv3d if subm else SparseConv3d
    conv = conv_cls(c_in, c_out, kernel, stride=stride, padding=padding, bias=False, indice_key=indice_key)
    return spconv.SparseSequential(conv, *_bn_relu(c_out))


class VoxelBackbone8x(nn.Module):
    """Sparse backbone. Input: voxel features (V,C), coords (V,4: b,z,y,x). Output dict with
    ``x_conv1..x_conv4`` (SparseConvTensors, strides 1,2,4,8) and ``encoded`` (after the
    z-collapsing conv) and their strides."""

    def __init__(self, cfg: Backbone3DConfig, in_channels: int, grid_size) -> None:
        super().__init__()
        require_spconv()
        self.cfg = cfg
        nx, ny, nz = grid_size
        # OpenPCDet adds one z slice so that the strided convs end in a whole number of slices
        self.sparse_shape = [nz + 1, ny, nx]
        stages = []
        c = in_channels
        for i, widths in enumerate(cfg.stages):
            layers = []
            key = f"subm{i + 1}"
            for j, w in enumerate(widths):
                if i > 0 and j == 0:
                    layers.append(sparse_conv_block(c, w, 3, stride=tuple(cfg.strides[i - 1]),
                                                    padding=tuple(cfg.paddings[i - 1]), subm=False,
                                                    indice_key=f"spconv{i + 1}"))
                else:
                    layers.append(sparse_conv_block(c, w, 3, padding=1, subm=True, indice_key=key))
                c = w
            stages.append(spconv.SparseSequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.conv_out = sparse_conv_block(c, cfg.out_channels, (3, 1, 1), stride=(2, 1, 1), padding=0,
                                          subm=False, indice_key="spconv_down2")
        self.out_channels = cfg.out_channels
        self.stage_channels = [s[-1] for s in cfg.stages]
        strides = [1]
        for s in cfg.strides:
            strides.append(strides[-1] * s[2])
        self.stage_strides = strides  # BEV (x/y) stride of each stage output

    @property
    def out_shape_z(self) -> int:
        """Number of z slices of the encoded output (folded into BEV channels)."""
        d = self.sparse_shape[0]
        for s, p in zip(self.cfg.strides, self.cfg.paddings):
            d = (d + 2 * p[0] - 3) // s[0] + 1
        return (d - 3) // 2 + 1

    def forward(self, voxel_features: torch.Tensor, coords: torch.Tensor, batch_size: int) -> dict:
        with SparseBlock(voxel_features.device) as blk:
            x = spconv.SparseConvTensor(blk.input(voxel_features), coords.int(), self.sparse_shape, batch_size)
            outs = {}
            for i, stage in enumerate(self.stages):
                x = stage(x)
                outs[f"x_conv{i + 1}"] = x
            enc = self.conv_out(x)
            result = {k: blk.output(v) for k, v in outs.items()}
            result["encoded"] = blk.output(enc)
        return result
