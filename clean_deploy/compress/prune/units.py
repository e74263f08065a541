"""Prunable units of a detector: every conv/linear layer whose output channels (filters) can be
removed, the block whose output carries those channels, and which layers consume them.

A unit's activation is the output of its conv + BN + ReLU block. The dependency structure of the
sparse 3D part (and the pillar VFE) is written out here; the dense BEV part's dependencies come
from torch-pruning's dependency graph (see :mod:`clean_deploy.compress.prune.pruner`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from clean_deploy.models.detector import Detector


@dataclass
class Unit:
    """One layer whose output channels can be removed."""

    name: str  # module path of the producing block, e.g. "backbone3d.stages.1.0"
    kind: str  # "sparse" | "dense" | "pillar"
    #: module whose output holds the channels (the conv+BN+ReLU block; for pillar layers the ReLU,
    #: because PillarVFE calls its layers' parts directly)
    block: nn.Module
    conv: nn.Module  # the producing conv / linear (its weight rows are the filters)
    channels: int
    #: module paths of layers whose input channels are these channels
    consumers: list[str] = field(default_factory=list)
    #: input channels consumed per unit channel (height compression folds D z-slices into BEV)
    fan: int = 1


def _first_bev_conv(det: Detector) -> str:
    return "backbone2d.blocks.0.0.0"


def _head_inputs(det: Detector) -> list[str]:
    return [f"dense_head.{name}" for name in det.dense_head.prunable_inputs()]


def find_units(det: Detector) -> list[Unit]:
    """All prunable units in forward order."""
    units: list[Unit] = []
    # pillar VFE: Linear + BN + ReLU layers; the last feeds the BEV scatter
    if det.backbone3d is None and hasattr(det.vfe, "layers"):
        n = len(det.vfe.layers)
        for i, layer in enumerate(det.vfe.layers):
            cons = [f"vfe.layers.{i + 1}.0"] if i + 1 < n else [_first_bev_conv(det)]
            units.append(Unit(f"vfe.layers.{i}", "pillar", layer[2], layer[0], layer[0].out_features, cons))
    if det.backbone3d is not None:
        seq = [(f"backbone3d.{name}", block) for name, block in det.backbone3d.conv_blocks()]
        for k, (name, block) in enumerate(seq):
            last = k + 1 == len(seq)
            cons = [_first_bev_conv(det)] if last else [seq[k + 1][0] + ".0"]
            units.append(Unit(name, "sparse", block, block[0], block[0].out_channels, cons,
                              fan=det.backbone3d.out_shape_z if last else 1))
    bb = det.backbone2d
    for i, block in enumerate(bb.blocks):
        for j, layer in enumerate(block):
            if j + 1 < len(block):
                cons = [f"backbone2d.blocks.{i}.{j + 1}.0"]
            else:
                cons = [f"backbone2d.deblocks.{i}.0"]
                if i + 1 < len(bb.blocks):
                    cons.append(f"backbone2d.blocks.{i + 1}.0.0")
            units.append(Unit(f"backbone2d.blocks.{i}.{j}", "dense", layer, layer[0], layer[0].out_channels, cons))
    for i, deblock in enumerate(bb.deblocks):
        units.append(Unit(f"backbone2d.deblocks.{i}", "dense", deblock, deblock[0], deblock[0].out_channels,
                          _head_inputs(det)))
    return units
