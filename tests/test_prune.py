"""Structured pruning: removing zero filters keeps outputs identical, exact vs first-order
importance agree, budgets are met exactly, pruned models reload as ordinary checkpoints."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from clean_deploy.compress.config import PruneConfig
from clean_deploy.compress.prune.importance import compute_importance, masked_ablation, masked_taylor
from clean_deploy.compress.prune.pruner import apply_pruning, min_width, plan_by_budget
from clean_deploy.compress.prune.run import (merged_profile, original_cost, prune, prune_model, prune_round, step_epochs,
                                             step_targets, unit_floors)
from clean_deploy.compress.prune.units import find_units
from clean_deploy.models.detector import build_detector
from clean_deploy.models.flops import count_params
from clean_deploy.models.zoo import get_config
from clean_deploy.models.checkpoint import load_detector, save_checkpoint

from toy import toy_batch

NAMES = ["second_fast@0.25x", "centerpoint_fast@0.25x", "pointpillars_fast@0.25x"]


def _model(name, seed=0):
    torch.manual_seed(seed)
    det = build_detector(get_config(name)).eval()
    # non-trivial BN statistics so that every layer matters
    for m in det.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return det


def _zero_filter(u, f):
    """Make channel f of unit u exactly zero: filter weights 0 and BN output 0 (gamma=beta=0)."""
    w = u.conv.weight.data
    if isinstance(u.conv, torch.nn.ConvTranspose2d):
        w[:, f] = 0
    else:
        w[f] = 0
    bn = u.block[1] if u.kind != "pillar" else None
    if bn is None:  # pillar unit: block is the ReLU, BN sits in the layer
        return
    bn.weight.data[f] = 0
    bn.bias.data[f] = 0


@pytest.mark.parametrize("name", NAMES + ["centerpoint_fast@0.25x+axis"])
def test_removing_zero_filters_keeps_outputs_identical(name):
    det = _model(name)
    units = find_units(det)
    keep = {}
    rng = np.random.default_rng(0)
    for u in units:
        if u.kind == "pillar":
            continue
        zeros = rng.choice(u.channels, size=max(1, u.channels // 4), replace=False)
        for f in zeros:
            _zero_filter(u, f)
        keep[u.name] = torch.tensor(sorted(set(range(u.channels)) - set(zeros.tolist())))
    batch = toy_batch(det.cfg, 2)
    with torch.no_grad():
        ref = det(batch)
    pruned = apply_pruning(det, keep, tuple(ref["bev"].shape[-2:]))
    with torch.no_grad():
        out = pruned(batch)
    for k in ("cls", "box", "hm", "reg", "dir"):
        if k in ref["dense"]:
            torch.testing.assert_close(out["dense"][k], ref["dense"][k], atol=1e-4, rtol=1e-4)
    # parameter count falls exactly by the removed rows/columns
    assert count_params(pruned) < count_params(det)
    widths = {u.name: len(keep.get(u.name, range(u.channels))) for u in units}
    for u in find_units(pruned):
        assert u.channels == widths[u.name]


def test_first_order_importance_ranks_like_the_exact_measure():
    det = _model("second_fast@0.25x")
    batch = toy_batch(det.cfg, 2)
    units = [u for u in find_units(det) if u.name.startswith(("backbone2d.blocks.1", "backbone2d.deblocks"))]
    exact = masked_ablation(det, [batch], units, progress=False)
    approx = masked_taylor(det, [batch], units, projections=16)
    e = torch.cat([exact[u.name] for u in units]).numpy()
    a = torch.cat([approx[u.name] for u in units]).numpy()
    rho = spearmanr(e, a).correlation
    print("spearman", rho)
    assert rho > 0.6, rho
    # per unit as well (the planner normalises within units)
    per = [spearmanr(exact[u.name].numpy(), approx[u.name].numpy()).correlation for u in units if u.channels >= 8]
    assert np.median(per) > 0.5, per


def test_masked_and_unmasked_importance_differ():
    det = _model("second_fast@0.25x")
    batch = toy_batch(det.cfg, 1)
    units = [u for u in find_units(det) if u.name.startswith("backbone2d.deblocks")]
    m = compute_importance("masked", det, [batch], units, progress=False)
    um = compute_importance("unmasked", det, [batch], units, progress=False)
    for u in units:
        assert m[u.name].sum() > 0 and um[u.name].sum() > 0
    assert not torch.allclose(m[units[0].name] / m[units[0].name].sum(), um[units[0].name] / um[units[0].name].sum())


@pytest.mark.parametrize("method", ["taylor", "l1", "random"])
def test_budget_is_met_and_checkpoint_reloads(method, tmp_path):
    det = _model("centerpoint_fast@0.25x")
    batch = toy_batch(det.cfg, 2)
    pruned, report = prune_model(det, [batch], PruneConfig(method=method, target=0.4, min_channels=4, min_ratio=0.2),
                                 progress=False)
    assert 0.36 <= report["flops_ratio"] <= 0.4
    assert report["plan"]["ratio"] == pytest.approx(report["flops_ratio"], rel=1e-6)  # cost model is exact
    for name, (before, after) in report["widths"].items():
        assert after >= min_width(before, 4, 0.2)
    save_checkpoint(tmp_path / "p.pth", pruned, pruned.cfg)
    again, ck = load_detector(tmp_path / "p.pth")
    assert ck["config"].backbone2d.blocks != det.cfg.backbone2d.blocks
    with torch.no_grad():
        a, b = pruned(batch), again(batch)
    torch.testing.assert_close(a["dense"]["hm"], b["dense"]["hm"])


def test_parameter_budget():
    det = _model("second_fast@0.25x")
    units = find_units(det)
    scores = compute_importance("l1", det, [], units)
    keep, plan = plan_by_budget(det, units, scores, 0.5, budget="params")
    batch = toy_batch(det.cfg, 1)
    with torch.no_grad():
        bev = det(batch)["bev"]
    pruned = apply_pruning(det, keep, tuple(bev.shape[-2:]))
    # the plan counts conv/linear weights; BN and biases make the real ratio slightly different
    assert count_params(pruned) / count_params(det) == pytest.approx(plan["ratio"], abs=0.05)
    assert plan["reached"]


@pytest.mark.parametrize("name", NAMES)
def test_masked_importance_equals_the_change_after_physically_removing_the_filter(name):
    """Brute force: for filters of sparse, dense and pillar units, remove the filter from the network
    (apply_pruning: the conv, its BN and the consumers' input channel go) and measure the masked mean
    over foreground locations of the class-summed |sigmoid change|; masked_ablation's score (which
    zeroes the activation with a hook) must be that number."""
    import copy

    from clean_deploy.compress.prune.importance import category_probs, location_mask

    det = _model(name)
    batch = toy_batch(det.cfg, 1)
    units = find_units(det)
    kinds = {u.kind for u in units}
    # every kind of unit this detector has: its narrowest unit (the exact measure costs a forward per filter)
    chosen = [min((u for u in units if u.kind == kind), key=lambda u: u.channels) for kind in sorted(kinds)]
    scores = masked_ablation(det, [batch], chosen, progress=False)
    with torch.no_grad():
        ref = det(batch)
        base, _ = category_probs(det, ref["dense"])
        mask = location_mask(det, batch, ref["dense"], True)
    assert mask.sum() > 0
    rng = np.random.default_rng(1)
    checked = 0
    for u in chosen:
        for f in rng.choice(u.channels, size=1).tolist():
            keep = {u.name: torch.tensor([c for c in range(u.channels) if c != f])}
            pruned = apply_pruning(copy.deepcopy(det), keep, tuple(ref["bev"].shape[-2:])).eval()
            with torch.no_grad():
                p, _ = category_probs(pruned, pruned(batch)["dense"])
            per_frame = ((p - base).abs().sum(-1) * mask).sum(1) / mask.sum(1).clamp(min=1)
            brute = float(per_frame.sum())
            assert scores[u.name][f] == pytest.approx(brute, rel=1e-4, abs=1e-7), (u.name, u.kind, f)
            checked += 1
    assert checked == len(chosen) and len(kinds) >= 2, kinds


def test_iterative_round_targets_and_epoch_split():
    assert step_targets(0.3, 1) == [0.3]
    t = step_targets(0.3, 2)
    assert t[0] == pytest.approx(0.3 ** 0.5) and t[1] == 0.3
    assert step_targets(0.25, 3) == pytest.approx([0.25 ** (1 / 3), 0.25 ** (2 / 3), 0.25])
    assert step_epochs(12, 2) == [6, 6] and step_epochs(7, 3) == [2, 2, 3] and step_epochs(12, 1) == [12]
    assert sum(step_epochs(13, 4)) == 13 and step_epochs(0, 2) == [0, 0]
    for bad in ((0.3, 0), (1.5, 2), (0.0, 2)):
        with pytest.raises(ValueError):
            step_targets(*bad)


def test_iterative_pruning_reaches_the_target_of_the_original_and_keeps_its_floors():
    """Two rounds reach target^(1/2) then target of the unpruned FLOPs (the cost model is exact), and
    every unit keeps the floor of its unpruned width (not min_ratio of an already pruned width)."""
    det = _model("centerpoint_fast@0.25x")
    batch = toy_batch(det.cfg, 2)
    cfg = PruneConfig(method="l1", target=0.2, min_channels=4, min_ratio=0.25, steps=2)
    cost0, floors = original_cost(det, [batch], cfg), unit_floors(det, cfg)
    assert cost0 == merged_profile(det, [batch]).macs and set(floors) == {u.name for u in find_units(det)}
    m1, r1 = prune_round(det, [batch], cfg, 1, cost0, floors, progress=False)
    assert 0.9 * 0.2 ** 0.5 <= r1["ratio_of_original"] <= 0.2 ** 0.5
    assert r1["ratio_of_original"] == pytest.approx(merged_profile(m1, [batch]).macs / cost0, rel=1e-9)
    m2, r2 = prune_round(m1, [batch], cfg, 2, cost0, floors, progress=False)
    assert 0.9 * 0.2 <= r2["ratio_of_original"] <= 0.2 and r2["step"] == 2 and r2["step_target"] == 0.2
    widths = {u.name: u.channels for u in find_units(m2)}
    assert all(widths[n] >= floors[n] for n in floors)
    assert sum(widths[n] == floors[n] for n in floors) >= 3  # the floors bind at this budget


def test_plan_by_budget_floors_override_the_ratio_floors():
    det = _model("centerpoint_fast@0.25x")
    units = find_units(det)
    scores = compute_importance("l1", det, [], units)
    profile = merged_profile(det, [toy_batch(det.cfg, 1)])
    keep, _ = plan_by_budget(det, units, scores, 0.1, profile, "flops", 1, 0.0)
    low = min(units, key=lambda u: len(keep[u.name]) / u.channels)  # the unit cut hardest without floors
    assert len(keep[low.name]) < low.channels // 2
    floors = {low.name: low.channels // 2}
    keep2, _ = plan_by_budget(det, units, scores, 0.1, profile, "flops", 1, 0.0, floors)
    assert len(keep2[low.name]) == low.channels // 2
    assert all(len(keep2[u.name]) >= 1 for u in units)


def test_iterative_prune_fine_tunes_between_rounds(synth_data, tmp_path):
    """prune(steps=2): round 1 prunes and fine-tunes, round 2 prunes the fine-tuned model (its weights,
    not the original's), the epochs are split, the final model is at the budget of the original."""
    det = _model("centerpoint_fast@0.25x")
    save_checkpoint(tmp_path / "student.pth", det, det.cfg)
    from clean_deploy.config import TrainConfig

    cfg = PruneConfig(method="l1", target=0.4, calib_frames=2, calib_batch=2, steps=2)
    tcfg = TrainConfig(epochs=2, batch_size=2, lr=0.003, num_workers=0, seed=0, device="cpu")
    rep = prune(tmp_path / "student.pth", synth_data, tmp_path / "run", cfg, tcfg, progress=False)
    assert [r["step"] for r in rep["rounds"]] == [1, 2] and rep["step_target"] == 0.4
    assert 0.36 <= rep["flops_ratio"] <= 0.4 and rep["params_before"] == count_params(det)
    ft1, _ = load_detector(tmp_path / "run" / "round1" / "finetune" / "model.pth")
    p1, _ = load_detector(tmp_path / "run" / "round1" / "pruned.pth")
    p2, _ = load_detector(tmp_path / "run" / "pruned.pth")
    assert count_params(p2) < count_params(p1) < count_params(det)
    assert rep["finetuned"].startswith(str(tmp_path / "run" / "round2" / "finetune"))
    # round 2 pruned round 1's fine-tuned model: the filters it kept are ft1's (bit for bit), not the original's
    r2, _ = load_detector(tmp_path / "run" / "round2" / "pruned.pth")
    for a, b in zip(r2.state_dict().values(), p2.state_dict().values()):
        assert torch.equal(a, b)  # run/pruned.pth is round 2's model before its fine-tuning
    u2 = find_units(p2)[0]  # its input channels are the raw features: filters are whole rows
    w1 = {u.name: u for u in find_units(ft1)}[u2.name].conv.weight.detach().flatten(1)
    w0 = {u.name: u for u in find_units(det)}[u2.name].conv.weight.detach().flatten(1)
    w2 = u2.conv.weight.detach().flatten(1)
    assert w2.shape[1] == w1.shape[1] == w0.shape[1]
    assert all(any(torch.equal(row, r) for r in w1) for row in w2)
    assert not any(any(torch.equal(row, r) for r in w0) for row in w2)
    # resumable: a second call finds every round finished and trains nothing again
    done = [tmp_path / "run" / f"round{i}" / "finetune" / "model.pth" for i in (1, 2)]
    stamps = [f.stat().st_mtime_ns for f in done]
    again = prune(tmp_path / "student.pth", synth_data, tmp_path / "run", cfg, tcfg, progress=False)
    assert [f.stat().st_mtime_ns for f in done] == stamps
    assert again["flops_ratio"] == rep["flops_ratio"] and again["finetuned"] == rep["finetuned"]


def test_compress_pipeline_refuses_iterative_pruning(tmp_path):
    """The end-to-end pipeline prunes in one shot: prune.steps > 1 is refused with a pointer to the
    command that does it, never silently run one-shot."""
    from clean_deploy.compress.config import CompressConfig
    from clean_deploy.pipeline import compress

    cfg = CompressConfig()
    cfg = cfg.replace(prune=cfg.prune.replace(steps=2))
    with pytest.raises(ValueError, match=r"prune.steps=2: .*clean-deploy prune --steps"):
        compress(tmp_path / "teacher.pth", tmp_path / "data", tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()
