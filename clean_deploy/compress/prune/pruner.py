"""Physical structured pruning: plan which filters to keep (by channel ratio or a FLOPs/parameter
budget, with per-layer minimums) and remove them. Dense BEV layers go through torch-pruning's
dependency graph (conv -> BN -> next conv / deconv -> concat -> head); sparse 3D convs, their
BatchNorm1d, the pillar VFE and the height-compression coupling use our own pruners. The result is
rebuilt from a config with the new widths, so it saves/loads as an ordinary checkpoint."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from clean_deploy.compress.prune.units import Unit, find_units
from clean_deploy.models.detector import Detector, build_detector
from clean_deploy.models.flops import ComputeProfile


# ----------------------------------------------------------------------------- planning
@dataclass
class _Layer:
    name: str
    factor: float  # MACs = factor * Cin * Cout (params: factor = kernel volume)
    cin_fixed: int
    cout_fixed: int
    cin_units: list[tuple[str, int]]
    cout_unit: str | None


def _module_dims(mod: nn.Module) -> tuple[int, int]:
    if isinstance(mod, nn.Linear):
        return mod.in_features, mod.out_features
    return mod.in_channels, mod.out_channels


def _kernel_volume(mod: nn.Module) -> int:
    if isinstance(mod, nn.Linear):
        return 1
    return int(math.prod(mod.kernel_size))


class CostModel:
    """MACs (from a compute profile) or parameters of every conv/linear layer as a function of the
    unit widths, so the planner can evaluate a removal in O(1)."""

    def __init__(self, det: Detector, units: list[Unit], profile: ComputeProfile | None, kind: str = "flops") -> None:
        mods = dict(det.named_modules())
        cin_units: dict[str, list[tuple[str, int]]] = {}
        for u in units:
            for c in u.consumers:
                cin_units.setdefault(c, []).append((u.name, u.fan))
        cout_unit = {u.name + ".0": u.name for u in units}  # the unit's conv/linear is its block's [0]
        self.widths = {u.name: u.channels for u in units}
        self.layers: list[_Layer] = []
        entries = ([(lc.name, lc.macs) for lc in profile.layers] if kind == "flops" else
                   [(n, None) for n, m in mods.items() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
                    or type(m).__name__ in ("SubMConv3d", "SparseConv3d")])
        for name, macs in entries:
            mod = mods[name]
            cin, cout = _module_dims(mod)
            factor = macs / max(cin * cout, 1) if kind == "flops" else _kernel_volume(mod)
            self.layers.append(_Layer(name, factor, cin, cout, cin_units.get(name, []), cout_unit.get(name)))

    def layer_cost(self, layer: _Layer, widths: dict[str, int]) -> float:
        cin = sum(fan * widths[u] for u, fan in layer.cin_units) if layer.cin_units else layer.cin_fixed
        cout = widths[layer.cout_unit] if layer.cout_unit else layer.cout_fixed
        return layer.factor * cin * cout

    def total(self, widths: dict[str, int] | None = None) -> float:
        widths = widths or self.widths
        return sum(self.layer_cost(layer, widths) for layer in self.layers)


def min_width(channels: int, min_channels: int, min_ratio: float) -> int:
    return min(channels, max(min_channels, int(math.ceil(channels * min_ratio))))


def plan_by_budget(det: Detector, units: list[Unit], scores: dict[str, torch.Tensor], target: float,
                   profile: ComputeProfile | None = None, budget: str = "flops", min_channels: int = 4,
                   min_ratio: float = 0.1, floors: dict[str, int] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Globally remove the least important filters (importance normalised by its unit's mean)
    until the model's FLOPs (``budget='flops'``, needs ``profile``) or parameters fall to
    ``target`` x the original. ``floors`` (unit name -> fewest channels) replaces the floors from
    ``min_channels`` / ``min_ratio`` for the units it names: an iterative pruning keeps the floors of
    the unpruned model, not ratios of ratios. Returns kept indices per unit and a summary."""
    cost = CostModel(det, units, profile, "flops" if budget == "flops" else "params")
    widths = dict(cost.widths)
    start = cost.total(widths)
    goal = target * start
    cands = []
    for u in units:
        s = scores[u.name].double()
        norm = s / s.mean().clamp(min=1e-12)
        cands += [(float(norm[f]), u.name, f) for f in range(u.channels)]
    cands.sort()
    removed: dict[str, list[int]] = {u.name: [] for u in units}
    floor = {u.name: min(u.channels, (floors or {}).get(u.name, min_width(u.channels, min_channels, min_ratio)))
             for u in units}
    current = start
    for _, name, f in cands:
        if current <= goal:
            break
        if widths[name] <= floor[name]:
            continue
        widths[name] -= 1
        removed[name].append(f)
        current = cost.total(widths)
    keep = {}
    for u in units:
        gone = set(removed[u.name])
        keep[u.name] = torch.tensor([c for c in range(u.channels) if c not in gone], dtype=torch.long)
    return keep, {"budget": budget, "start": start, "end": current, "ratio": current / max(start, 1e-12),
                  "target": target, "reached": current <= goal}


# ------------------------------------------------------------------------------ pruners
def _slice_param(p: nn.Parameter | torch.Tensor | None, dim: int, idx: torch.Tensor):
    if p is None:
        return None
    data = p.data.index_select(dim, idx.to(p.device)).clone()
    if isinstance(p, nn.Parameter):
        return nn.Parameter(data, requires_grad=p.requires_grad)
    return data


def prune_sparse_conv(conv: nn.Module, keep_out: torch.Tensor | None = None, keep_in: torch.Tensor | None = None) -> None:
    """spconv SubMConv3d/SparseConv3d: weight ``[Cout, kD, kH, kW, Cin]`` (and bias)."""
    if keep_out is not None:
        conv.weight = _slice_param(conv.weight, 0, keep_out)
        if conv.bias is not None:
            conv.bias = _slice_param(conv.bias, 0, keep_out)
        conv.out_channels = len(keep_out)
    if keep_in is not None:
        conv.weight = _slice_param(conv.weight, conv.weight.dim() - 1, keep_in)
        conv.in_channels = len(keep_in)


def prune_batchnorm(bn: nn.modules.batchnorm._BatchNorm, keep: torch.Tensor) -> None:
    bn.weight = _slice_param(bn.weight, 0, keep)
    bn.bias = _slice_param(bn.bias, 0, keep)
    bn.running_mean = _slice_param(bn.running_mean, 0, keep)
    bn.running_var = _slice_param(bn.running_var, 0, keep)
    bn.num_features = len(keep)


def prune_linear(lin: nn.Linear, keep_out: torch.Tensor | None = None, keep_in: torch.Tensor | None = None) -> None:
    if keep_out is not None:
        lin.weight = _slice_param(lin.weight, 0, keep_out)
        if lin.bias is not None:
            lin.bias = _slice_param(lin.bias, 0, keep_out)
        lin.out_features = len(keep_out)
    if keep_in is not None:
        lin.weight = _slice_param(lin.weight, 1, keep_in)
        lin.in_features = len(keep_in)


class _BEVPart(nn.Module):
    """The dense part (BEV backbone + head) as one traceable module for torch-pruning."""

    def __init__(self, det: Detector) -> None:
        super().__init__()
        self.backbone2d = det.backbone2d
        self.dense_head = det.dense_head

    def forward(self, x: torch.Tensor):
        out = self.dense_head(self.backbone2d(x))
        return [v for v in out.values() if isinstance(v, torch.Tensor)]


def _expand_fan(idx: torch.Tensor, fan: int) -> torch.Tensor:
    return (idx[:, None] * fan + torch.arange(fan)[None, :]).reshape(-1)


def apply_pruning(det: Detector, keep: dict[str, torch.Tensor], bev_shape: tuple[int, int]) -> Detector:
    """Remove every filter not in ``keep`` (unit name -> kept channel indices; missing units are
    kept whole) and return a detector rebuilt from the config with the new widths (``det`` itself
    is left untouched)."""
    was_training = det.training
    det = copy.deepcopy(det).eval()
    units = find_units(det)
    mods = dict(det.named_modules())
    in_ch = det.backbone2d.in_channels
    dg = tp.DependencyGraph().build_dependency(_BEVPart(det), example_inputs=torch.zeros(1, in_ch, *bev_shape),
                                               verbose=False)
    with torch.no_grad():
        for u in units:
            k = keep.get(u.name)
            if k is None or len(k) == u.channels:
                continue
            k = k.long().sort().values
            gone = sorted(set(range(u.channels)) - set(k.tolist()))
            if u.kind == "dense":
                fn = dg.get_pruner_of_module(u.conv).prune_out_channels
                dg.get_pruning_group(u.conv, fn, idxs=gone).prune()
                continue
            if u.kind == "sparse":
                prune_sparse_conv(u.conv, keep_out=k)
                prune_batchnorm(u.block[1], k)
            else:  # pillar: Linear + BN1d
                layer = mods[u.name]
                prune_linear(layer[0], keep_out=k)
                prune_batchnorm(layer[1], k)
            for c in u.consumers:
                m = mods[c]
                if type(m).__name__ in ("SubMConv3d", "SparseConv3d"):
                    prune_sparse_conv(m, keep_in=k)
                elif isinstance(m, nn.Linear):
                    prune_linear(m, keep_in=k)
                else:  # the first BEV conv: height compression folds `fan` z-slices per channel
                    tp.prune_conv_in_channels(m, _expand_fan(torch.tensor(gone), u.fan).tolist())
    cfg = config_from_modules(det)
    pruned = build_detector(cfg)
    pruned.load_state_dict(det.state_dict(), strict=True)
    return pruned.train(was_training)


def config_from_modules(det: Detector):
    """The detector config that describes the (pruned) modules' widths."""
    cfg = det.cfg
    changes = {"vfe": det.vfe.config_with_widths(cfg.vfe),
               "backbone2d": det.backbone2d.config_with_widths(cfg.backbone2d)}
    if det.backbone3d is not None:
        changes["backbone3d"] = det.backbone3d.config_with_widths(cfg.backbone3d)
    return cfg.replace(**changes)
