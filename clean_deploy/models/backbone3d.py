"""SECOND-style sparse 3D backbone (VoxelBackBone8x): SubMConv3d/SparseConv3d blocks with BN+ReLU,
multi-scale sparse outputs for the RoI head and a z-collapsing output for the BEV map."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.models.config import Backbone3DConfig
from clean_deploy.models.registry import BACKBONES_3D
from clean_deploy.models.sparse import SparseBlock, SparseConv3d, SubMConv3d, require_spconv, spconv


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm1d(c, eps=1e-3), nn.ReLU()]


def sparse_conv_block(c_in: int, c_out: int, kernel, stride=1, padding=0, subm: bool = True,
                      indice_key: str | None = None):
    """conv (no bias) + BN + ReLU as one SparseSequential; the unit pruning works on."""
    conv_cls = SubMConv3d if subm else SparseConv3d
    conv = conv_cls(c_in, c_out, kernel, stride=stride, padding=padding, bias=False, indice_key=indice_key)
    return spconv.SparseSequential(conv, *_bn_relu(c_out))


class SparseBackbone3D(nn.Module):
    """Contract of a sparse 3D backbone (what the detector, the RoI head, export and pruning read).

    ``forward(voxel_features (V,C), coords (V,4: b,z,y,x), batch_size)`` -> dict of SparseConvTensors
    ``x_conv1..`` (one per stage) and ``encoded`` (the input of height compression).
    ``sparse_shape`` [D, H, W] of the input grid; ``out_channels`` and ``out_shape_z`` of
    ``encoded``; ``stage_channels``/``stage_strides`` of the stage outputs (BEV stride);
    ``conv_blocks()``: every conv+BN+ReLU block in forward order with its module path (each block's
    output feeds the next one; the last feeds the BEV map); ``config_with_widths(cfg)``: the config
    section describing the current (possibly pruned) widths; ``roi_scales(voxel_size)``: channels and
    voxel size of each stage output (the RoI head pools them).
    """

    sparse_shape: list[int]
    out_channels: int
    stage_channels: list[int]
    stage_strides: list[int]

    @property
    def out_shape_z(self) -> int:
        raise NotImplementedError

    def conv_blocks(self) -> list[tuple[str, nn.Module]]:
        raise NotImplementedError

    def config_with_widths(self, cfg: Backbone3DConfig) -> Backbone3DConfig:
        raise NotImplementedError

    def roi_scales(self, voxel_size) -> dict[str, tuple[int, tuple[float, float, float]]]:
        raise NotImplementedError


@BACKBONES_3D.register("voxel_8x")
class VoxelBackbone8x(SparseBackbone3D):
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

    def conv_blocks(self) -> list[tuple[str, nn.Module]]:
        blocks = [(f"stages.{i}.{j}", block) for i, stage in enumerate(self.stages) for j, block in enumerate(stage)]
        return blocks + [("conv_out", self.conv_out)]

    def config_with_widths(self, cfg: Backbone3DConfig) -> Backbone3DConfig:
        return cfg.replace(stages=tuple(tuple(block[0].out_channels for block in stage) for stage in self.stages),
                           out_channels=self.conv_out[0].out_channels)

    def roi_scales(self, voxel_size) -> dict[str, tuple[int, tuple[float, float, float]]]:
        vs = voxel_size
        scales = {}
        down = [1, 1, 1]  # x, y, z downsampling of each stage
        for i, ch in enumerate(self.stage_channels):
            if i > 0:
                s = self.cfg.strides[i - 1]
                down = [down[0] * s[2], down[1] * s[1], down[2] * s[0]]
            scales[f"x_conv{i + 1}"] = (ch, (vs[0] * down[0], vs[1] * down[1], vs[2] * down[2]))
        return scales

    def forward(self, voxel_features: torch.Tensor, coords: torch.Tensor, batch_size: int,
                rulebooks: dict | None = None) -> dict:
        """``rulebooks``: rulebooks another network built for the same ``coords`` tensor
        (:func:`~clean_deploy.models.sparse.shared_rulebooks`, a CaKD teacher's); each layer takes the
        one under its ``indice_key`` when it was built for its very input sites and geometry, else it
        builds its own."""
        with SparseBlock(voxel_features.device) as blk:
            x = spconv.SparseConvTensor(blk.input(voxel_features), coords.int(), self.sparse_shape, batch_size,
                                        indice_dict=dict(rulebooks) if rulebooks else None)
            outs = {}
            for i, stage in enumerate(self.stages):
                x = stage(x)
                outs[f"x_conv{i + 1}"] = x
            enc = self.conv_out(x)
            result = {k: blk.output(v) for k, v in outs.items()}
            result["encoded"] = blk.output(enc)
        return result
