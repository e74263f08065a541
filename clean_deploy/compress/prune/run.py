"""``clean-deploy prune``: importance on calibration frames -> budgeted plan -> physical removal ->
fine-tuning (with CaKD when a teacher is given) -> an ordinary checkpoint with the new widths."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from clean_deploy.atomic import atomic_write
from clean_deploy.compress.config import DistillConfig, PruneConfig
from clean_deploy.compress.prune.importance import compute_importance
from clean_deploy.compress.prune.pruner import apply_pruning, min_width, plan_by_budget
from clean_deploy.compress.prune.units import find_units
from clean_deploy.config import TrainConfig
from clean_deploy.data.dataset import KittiDetectionDataset, collate_batch
from clean_deploy.models.detector import Detector
from clean_deploy.models.flops import ComputeProfile, count_params, profile_compute
from clean_deploy.models.checkpoint import load_detector, save_checkpoint
from clean_deploy.train.loop import experiment_for


def calibration_batches(det: Detector, data_root, frames: int, batch_size: int, split: str = "train") -> list[dict]:
    """The first ``frames`` frames of ``split`` preprocessed as for evaluation (no augmentation)."""
    ds = KittiDetectionDataset(experiment_for(det.cfg, data_root), det.cfg, split=split, training=False)
    idx = list(range(min(frames, len(ds))))
    return [collate_batch([ds[i] for i in idx[s:s + batch_size]]) for s in range(0, len(idx), batch_size)]


def merged_profile(det: Detector, batches: list[dict]) -> ComputeProfile:
    """Per-layer MACs summed over the calibration batches (the planner's cost model)."""
    total: dict[str, object] = {}
    for b in batches:
        for lc in profile_compute(det, b).layers:
            if lc.name in total:
                total[lc.name].macs += lc.macs
            else:
                total[lc.name] = lc
    return ComputeProfile(list(total.values()))


def step_targets(target: float, steps: int) -> list[float]:
    """FLOPs (or parameter) fraction of the unpruned model after each round of an iterative pruning:
    target^(i/steps), i = 1..steps (equal ratios per round; the last is ``target``)."""
    if steps < 1 or not 0.0 < target <= 1.0:
        raise ValueError(f"iterative pruning needs steps >= 1 and 0 < target <= 1, got steps={steps}, target={target}")
    return [target ** (i / steps) for i in range(1, steps)] + [target]


def step_epochs(epochs: int, steps: int) -> list[int]:
    """The fine-tuning epochs of each round: ``epochs`` split as evenly as possible, the remainder on the
    last rounds (the total is that of one-shot pruning, so the two compare at equal training steps)."""
    if steps < 1 or epochs < 0:
        raise ValueError(f"need steps >= 1 and epochs >= 0, got steps={steps}, epochs={epochs}")
    return [epochs // steps + (1 if i >= steps - epochs % steps else 0) for i in range(steps)]


def unit_floors(det: Detector, cfg: PruneConfig) -> dict[str, int]:
    """The fewest channels each prunable unit of the unpruned ``det`` may keep (``min_channels``,
    ``min_ratio``): the floors every round of an iterative pruning keeps."""
    return {u.name: min_width(u.channels, cfg.min_channels, cfg.min_ratio) for u in find_units(det)}


def prune_model(det: Detector, batches: list[dict], cfg: PruneConfig, progress: bool = True,
                target: float | None = None, floors: dict[str, int] | None = None) -> tuple[Detector, dict]:
    """Prune ``det`` to the budget; returns the new detector and a report (importance, plan).

    ``target`` (default ``cfg.target``) is the fraction of ``det``'s own FLOPs / parameters to keep
    and ``floors`` (see :func:`unit_floors`) the fewest channels per unit; a round of an iterative
    pruning passes both relative to the unpruned model (:func:`prune_round`)."""
    det = det.eval()
    units = find_units(det)
    t0 = time.time()
    scores = compute_importance(cfg.method, det, batches, units, seed=cfg.seed, progress=progress)
    t_imp = time.time() - t0
    profile = merged_profile(det, batches)
    keep, plan = plan_by_budget(det, units, scores, cfg.target if target is None else target, profile, cfg.budget,
                                cfg.min_channels, cfg.min_ratio, floors)
    with torch.no_grad():
        bev = det(batches[0])["bev"]
    pruned = apply_pruning(det, keep, tuple(bev.shape[-2:]))
    after = merged_profile(pruned, batches)
    report = {"method": cfg.method, "importance_seconds": t_imp, "plan": plan,
              "params_before": count_params(det), "params_after": count_params(pruned),
              "macs_before": profile.macs, "macs_after": after.macs, "flops_ratio": after.macs / max(profile.macs, 1),
              "widths": {u.name: [u.channels, int(len(keep[u.name]))] for u in units}}
    return pruned, report


def prune_round(det: Detector, batches: list[dict], cfg: PruneConfig, step: int, original_cost: float,
                floors: dict[str, int], progress: bool = True) -> tuple[Detector, dict]:
    """Round ``step`` (1-based) of an iterative pruning of a model whose unpruned FLOPs on ``batches``
    (parameters with ``budget='params'``) were ``original_cost``: prune ``det`` (the fine-tuned result
    of the previous round) to :func:`step_targets` [step - 1] x ``original_cost``."""
    goal = step_targets(cfg.target, cfg.steps)[step - 1]
    now = merged_profile(det, batches).macs if cfg.budget == "flops" else count_params(det)
    pruned, report = prune_model(det, batches, cfg, progress, target=min(1.0, goal * original_cost / max(now, 1e-12)),
                                 floors=floors)
    after = report["macs_after"] if cfg.budget == "flops" else report["params_after"]
    report.update(step=step, steps=cfg.steps, step_target=goal, ratio_of_original=after / max(original_cost, 1e-12))
    return pruned, report


def original_cost(det: Detector, batches: list[dict], cfg: PruneConfig) -> float:
    """What the budget of ``cfg`` is a fraction of: FLOPs on ``batches`` or parameters of ``det``."""
    return float(merged_profile(det, batches).macs if cfg.budget == "flops" else count_params(det))


def _finetune(model: Detector, run_dir: Path, data_root, train_cfg: TrainConfig, teacher_ckpt, distill_cfg,
              meta: dict, progress: bool, resume: bool = False):
    if teacher_ckpt is not None:
        from clean_deploy.compress.distill.run import distill

        return distill(teacher_ckpt, model.cfg, data_root, run_dir, train_cfg, distill_cfg, resume=resume,
                       student_model=model.train(), meta=meta, progress=progress)
    from clean_deploy.train.loop import Trainer

    return Trainer(model.cfg, train_cfg, data_root, run_dir, model=model.train(), meta=meta, progress=progress,
                   resume=resume).fit()


def prune(ckpt: str | Path, data_root: str | Path, run_dir: str | Path, cfg: PruneConfig,
          train_cfg: TrainConfig | None = None, teacher_ckpt: str | Path | None = None,
          distill_cfg: DistillConfig | None = None, progress: bool = True) -> dict:
    """Prune a checkpoint and fine-tune it (with CaKD when ``teacher_ckpt`` is given).

    ``cfg.steps > 1``: iterative pruning, round i in ``run_dir/round<i>/`` (``pruned.pth``,
    ``finetune/``), each pruning the previous round's fine-tuned model to :func:`step_targets` [i-1] of
    the original FLOPs and fine-tuning :func:`step_epochs` [i-1] of ``train_cfg.epochs``; the last
    round's pruned model is also ``run_dir/pruned.pth``. Resumable: a finished round (its fine-tuned
    ``model.pth``) is not run again and an interrupted fine-tuning resumes from its last epoch."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    det, ck = load_detector(ckpt)
    batches = calibration_batches(det, data_root, cfg.calib_frames, cfg.calib_batch)
    epochs = train_cfg.epochs if train_cfg is not None else 0
    if cfg.steps == 1:
        pruned, report = prune_model(det, batches, cfg, progress)
        meta = {"pruned_from": str(ckpt), "prune_config": cfg.to_dict(), "prune_report": report}
        save_checkpoint(run_dir / "pruned.pth", pruned, pruned.cfg, meta={**meta, "kind": "pruned"})
        (run_dir / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
        if epochs > 0:
            res = _finetune(pruned, run_dir / "finetune", data_root, train_cfg, teacher_ckpt, distill_cfg, meta, progress)
            report["finetuned"] = str(res.final_checkpoint)
            report["finetune_seconds"] = res.seconds
        return report
    cost0, floors = original_cost(det, batches, cfg), unit_floors(det, cfg)
    rounds, current = [], det
    for step, ep in enumerate(step_epochs(epochs, cfg.steps), 1):
        rd = run_dir / f"round{step}"
        rd.mkdir(parents=True, exist_ok=True)
        if (rd / "pruned.pth").is_file():  # a resumed run: this round's pruning is done
            pruned, pck = load_detector(rd / "pruned.pth")
            report = pck["meta"]["prune_report"]
        else:
            pruned, report = prune_round(current, batches, cfg, step, cost0, floors, progress)
            meta = {"pruned_from": str(ckpt), "prune_config": cfg.to_dict(), "prune_report": report}
            save_checkpoint(rd / "pruned.pth", pruned, pruned.cfg, meta={**meta, "kind": "pruned"})
        current = pruned
        if ep > 0:
            done = rd / "finetune" / "model.pth"
            if not done.is_file():
                meta = {"pruned_from": str(ckpt), "prune_config": cfg.to_dict(), "prune_report": report}
                _finetune(pruned, rd / "finetune", data_root, train_cfg.replace(epochs=ep), teacher_ckpt,
                          distill_cfg, meta, progress, resume=True)
            report = {**report, "finetuned": str(done)}
            current, _ = load_detector(done)
        rounds.append(report)
    macs0 = cost0 if cfg.budget == "flops" else merged_profile(det, batches).macs
    final = {**rounds[-1], "params_before": count_params(det), "macs_before": macs0,
             "flops_ratio": rounds[-1]["macs_after"] / max(macs0, 1), "rounds": rounds}
    last, _ = load_detector(run_dir / f"round{cfg.steps}" / "pruned.pth")  # before its fine-tuning
    save_checkpoint(run_dir / "pruned.pth", last, last.cfg,
                    meta={"pruned_from": str(ckpt), "prune_config": cfg.to_dict(), "prune_report": final, "kind": "pruned"})
    atomic_write(run_dir / "prune_report.json", lambda f: f.write((json.dumps(final, indent=2) + "\n").encode()))
    return final
