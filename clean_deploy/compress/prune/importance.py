"""Filter importance measures.

* ``masked_ablation`` (CLEAN's criterion): the change of the model's category predictions over the
  foreground (masked) locations when a filter is removed -- sum over classes of
  ``|sigmoid(z') - sigmoid(z)|``, averaged over masked locations, summed over calibration batches.
  Exact: one forward pass per filter (BEV-layer filters restart from the cached BEV map).
* ``masked_taylor``: a first-order approximation of the same quantity from a few backward passes:
  with random +-1 projections ``s_k`` of the masked predictions, ``t_k(f) = <dS_k/dA_f, A_f>`` is
  the linearised change of ``S_k`` when activation ``A_f`` is removed and ``sqrt(mean_k t_k^2)``
  estimates the L2 norm of the prediction change.
* baselines for the ablation study: ``l1_norm`` of the filter weights, ``random``, and
  ``unmasked_ablation`` (the exact measure over the whole map).
"""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from tqdm import tqdm

from clean_deploy.compress.distill.masks import foreground_mask
from clean_deploy.compress.prune.units import Unit
from clean_deploy.models.detector import Detector
from clean_deploy.models.sparse import finish_backward


def category_probs(det: Detector, dense: dict) -> tuple[torch.Tensor, int]:
    """(N, L, C) class probabilities of every dense location and the locations per BEV cell."""
    return det.dense_head.class_probs(dense)


def location_mask(det: Detector, batch: dict, dense: dict, masked: bool, enlarge: float = 0.5) -> torch.Tensor:
    """(N, L) weights of the dense locations: 1 inside (enlarged) GT boxes, 0 elsewhere; all ones
    when ``masked`` is False."""
    probs, per_cell = category_probs(det, dense)
    if not masked:
        return torch.ones(probs.shape[:2], device=probs.device)
    size = dense["feature_size"]
    m = foreground_mask(batch["gt_boxes"], None, det.cfg.point_cloud_range, size,
                        (1.0,) * len(det.cfg.class_names), 0.0, enlarge, 1.0)
    return m.reshape(m.shape[0], -1).repeat_interleave(per_cell, dim=1)


def _masked_change(p: torch.Tensor, base: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over frames of the masked mean (over locations) of the class-summed |p - base|."""
    d = (p - base).abs().sum(-1) * mask
    return (d.sum(1) / mask.sum(1).clamp(min=1)).sum()


@contextlib.contextmanager
def _zero_channel(unit: Unit, channel: int):
    """Temporarily remove one output channel of a unit (its activation is zero)."""
    def hook(mod, inp, out):
        if unit.kind == "sparse":
            f = out.features.clone()
            f[:, channel] = 0
            return out.replace_feature(f)
        if unit.kind == "pillar":
            out = out.clone()
            out[..., channel] = 0
            return out
        out = out.clone()
        out[:, channel] = 0
        return out

    h = unit.block.register_forward_hook(hook)
    try:
        yield
    finally:
        h.remove()


def _dense_from_bev(det: Detector, bev: torch.Tensor) -> dict:
    return det.dense_head(det.backbone2d(bev))


@torch.no_grad()
def masked_ablation(det: Detector, batches: Iterable[dict], units: list[Unit], masked: bool = True,
                    progress: bool = True) -> dict[str, torch.Tensor]:
    """Exact importance of every filter of every unit (see module docstring)."""
    det.eval()
    scores = {u.name: torch.zeros(u.channels, dtype=torch.float64) for u in units}
    batches = list(batches)
    total = sum(u.channels for u in units) * len(batches)
    bar = tqdm(total=total, desc="importance (ablation)", disable=not progress, leave=False, dynamic_ncols=True)
    for batch in batches:
        out = det(batch)
        base, _ = category_probs(det, out["dense"])
        mask = location_mask(det, batch, out["dense"], masked)
        for u in units:
            for f in range(u.channels):
                with _zero_channel(u, f):
                    dense = _dense_from_bev(det, out["bev"]) if u.kind == "dense" else det(batch)["dense"]
                p, _ = category_probs(det, dense)
                scores[u.name][f] += float(_masked_change(p, base, mask))
                bar.update(1)
    bar.close()
    return scores


def unmasked_ablation(det: Detector, batches, units: list[Unit], progress: bool = True) -> dict[str, torch.Tensor]:
    """The exact measure over the whole map (the 'CaPR without mask' ablation baseline)."""
    return masked_ablation(det, batches, units, masked=False, progress=progress)


def masked_taylor(det: Detector, batches: Iterable[dict], units: list[Unit], projections: int = 8,
                  seed: int = 0, masked: bool = True) -> dict[str, torch.Tensor]:
    """First-order approximation of :func:`masked_ablation` (see module docstring)."""
    det.eval()
    gen = torch.Generator().manual_seed(seed)
    scores = {u.name: torch.zeros(u.channels, dtype=torch.float64) for u in units}
    for batch in batches:
        acts: dict[str, torch.Tensor] = {}

        def capture(unit: Unit):
            def hook(mod, inp, out):
                acts[unit.name] = out.features if unit.kind == "sparse" else out
            return hook

        hooks = [u.block.register_forward_hook(capture(u)) for u in units]
        try:
            with torch.enable_grad():
                out = det(batch)
                p, _ = category_probs(det, out["dense"])
                mask = location_mask(det, batch, out["dense"], masked)
                w = mask / mask.sum(1, keepdim=True).clamp(min=1)
                names = [u.name for u in units]
                tensors = [acts[n] for n in names]
                sq = {n: torch.zeros(u.channels, dtype=torch.float64) for n, u in zip(names, units)}
                for k in range(projections):
                    signs = torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1
                    s = (p * signs * w[..., None]).sum()
                    grads = torch.autograd.grad(s, tensors, retain_graph=k + 1 < projections, allow_unused=True)
                    for n, u, a, g in zip(names, units, tensors, grads):
                        if g is None:
                            continue
                        ga = (g * a).detach()
                        t = ga.reshape(-1, ga.shape[-1]).sum(0) if u.kind in ("sparse", "pillar") else ga.sum((0, 2, 3))
                        sq[n] += t.double() ** 2
        finally:
            for h in hooks:
                h.remove()
            finish_backward()  # the gradients stop at the activations, before the sparse input gate
        for n in scores:
            scores[n] += (sq[n] / projections).sqrt()
    return scores


def l1_norm(det: Detector, units: list[Unit]) -> dict[str, torch.Tensor]:
    """Sum of absolute filter weights (the classic L1-norm filter pruning criterion)."""
    out = {}
    for u in units:
        w = u.conv.weight.detach()
        if isinstance(u.conv, torch.nn.ConvTranspose2d):
            out[u.name] = w.abs().sum((0, 2, 3)).double()
        else:
            out[u.name] = w.abs().reshape(w.shape[0], -1).sum(1).double()
    return out


def random_importance(units: list[Unit], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {u.name: torch.rand(u.channels, generator=gen, dtype=torch.float64) for u in units}


def compute_importance(method: str, det: Detector, batches, units: list[Unit], seed: int = 0,
                       progress: bool = True) -> dict[str, torch.Tensor]:
    """Dispatch by name: masked (CLEAN, exact), taylor (first-order), unmasked, l1, random."""
    if method == "masked":
        return masked_ablation(det, batches, units, True, progress)
    if method == "taylor":
        return masked_taylor(det, batches, units, seed=seed)
    if method == "unmasked":
        return unmasked_ablation(det, batches, units, progress)
    if method == "l1":
        return l1_norm(det, units)
    if method == "random":
        return random_importance(units, seed)
    raise ValueError(f"unknown importance method {method!r}: masked | taylor | unmasked | l1 | random")
