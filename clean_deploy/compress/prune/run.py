"""``clean-deploy prune``: importance on calibration frames -> budgeted plan -> physical removal ->
fine-tuning (with CaKD when a teacher is given) -> an ordinary checkpoint with the new widths."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from clean_deploy.compress.config import DistillConfig, PruneConfig
from clean_deploy.compress.prune.importance import compute_importance
from clean_deploy.compress.prune.pruner import apply_pruning, plan_by_budget
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


def prune_model(det: Detector, batches: list[dict], cfg: PruneConfig, progress: bool = True) -> tuple[Detector, dict]:
    """Prune ``det`` to the budget; returns the new detector and a report (importance, plan)."""
    det = det.eval()
    units = find_units(det)
    t0 = time.time()
    scores = compute_importance(cfg.method, det, batches, units, seed=cfg.seed, progress=progress)
    t_imp = time.time() - t0
    profile = merged_profile(det, batches)
    keep, plan = plan_by_budget(det, units, scores, cfg.target, profile, cfg.budget, cfg.min_channels, cfg.min_ratio)
    with torch.no_grad():
        bev = det(batches[0])["bev"]
    pruned = apply_pruning(det, keep, tuple(bev.shape[-2:]))
    after = merged_profile(pruned, batches)
    report = {"method": cfg.method, "importance_seconds": t_imp, "plan": plan,
              "params_before": count_params(det), "params_after": count_params(pruned),
              "macs_before": profile.macs, "macs_after": after.macs, "flops_ratio": after.macs / max(profile.macs, 1),
              "widths": {u.name: [u.channels, int(len(keep[u.name]))] for u in units}}
    return pruned, report


def prune(ckpt: str | Path, data_root: str | Path, run_dir: str | Path, cfg: PruneConfig,
          train_cfg: TrainConfig | None = None, teacher_ckpt: str | Path | None = None,
          distill_cfg: DistillConfig | None = None, progress: bool = True) -> dict:
    """Prune a checkpoint and fine-tune it (with CaKD when ``teacher_ckpt`` is given)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    det, ck = load_detector(ckpt)
    batches = calibration_batches(det, data_root, cfg.calib_frames, cfg.calib_batch)
    pruned, report = prune_model(det, batches, cfg, progress)
    meta = {"pruned_from": str(ckpt), "prune_config": cfg.to_dict(), "prune_report": report}
    save_checkpoint(run_dir / "pruned.pth", pruned, pruned.cfg, meta={**meta, "kind": "pruned"})
    (run_dir / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if train_cfg is not None and train_cfg.epochs > 0:
        if teacher_ckpt is not None:
            from clean_deploy.compress.distill.run import distill

            res = distill(teacher_ckpt, pruned.cfg, data_root, run_dir / "finetune", train_cfg, distill_cfg,
                          student_model=pruned, meta=meta, progress=progress)
        else:
            from clean_deploy.train.loop import Trainer

            res = Trainer(pruned.cfg, train_cfg, data_root, run_dir / "finetune", model=pruned, meta=meta,
                          progress=progress).fit()
        report["finetuned"] = str(res.final_checkpoint)
        report["finetune_seconds"] = res.seconds
    return report
