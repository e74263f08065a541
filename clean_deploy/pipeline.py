"""The whole CLEAN method in one call (``clean-deploy compress``): distil a one-stage student from
the two-stage teacher, prune it with masked category-knowledge importance to a FLOPs budget,
fine-tune with distillation, switch on IoU-aware redundancy elimination, evaluate teacher and
student, and write a report (markdown + JSON + accuracy-vs-latency plot).

Every stage writes into ``RUN_DIR/<stage>/`` and is skipped when its output exists from the same
settings and inputs, so an interrupted run resumes where it stopped; a run directory made with other
settings is refused with a message naming what changed (:mod:`clean_deploy.stages`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from clean_deploy.bench.plots import accuracy_latency_plot
from clean_deploy.bench.results import BenchResult, markdown_table
from clean_deploy.bench.run import BenchJob, run_job_cached
from clean_deploy.compress.config import CompressConfig
from clean_deploy.data.augment.gt_sampling import dataset_fingerprint
from clean_deploy.data.kitti.reader import KittiReader
from clean_deploy.config import TrainConfig
from clean_deploy.models.zoo import get_config, with_iou_branch
from clean_deploy.stages import Stage, run_stage
from clean_deploy.models.checkpoint import load_detector, save_checkpoint


def _evaluate(ckpt: Path, data, split: str, out_dir: Path, latency_frames: int, threads: int) -> dict:
    """AP, size, FLOPs, CPU latency and peak memory of a checkpoint, measured by the ``clean-deploy
    bench`` worker in its own process (cached in ``out_dir`` while the checkpoint is unchanged)."""
    res = run_job_cached(BenchJob(str(ckpt), "torch"), Path(data), split, latency_frames, 2, threads, out_dir,
                         out_dir / "result.json")
    return {"checkpoint": str(ckpt), **res, "latency_ms": BenchResult.from_dict(res).latency.p50()}


def compress(teacher_ckpt: str | Path, data_root: str | Path, run_dir: str | Path, cfg: CompressConfig,
             target_flops: float | None = None, echo=print) -> dict:
    """Run distil -> prune -> fine-tune -> RE -> eval (cached stages, :mod:`clean_deploy.stages`);
    returns the report dict."""
    from clean_deploy.compress.distill.run import distill
    from clean_deploy.compress.prune.run import calibration_batches, prune_model

    if cfg.prune.steps != 1:
        raise ValueError(f"prune.steps={cfg.prune.steps}: the compress pipeline prunes in one shot; iterative "
                         "pruning is `clean-deploy prune --steps N` on the distilled student")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if target_flops is not None:
        cfg = cfg.replace(prune=cfg.prune.replace(target=target_flops))
    teacher_ckpt = Path(teacher_ckpt)
    student_cfg = with_iou_branch(get_config(cfg.student))  # IoU branch on: RE needs the predicted quality
    dist_ckpt, pruned_ckpt = run / "distill" / "model.pth", run / "prune" / "pruned.pth"
    ft_ckpt, final_ckpt = run / "finetune" / "model.pth", run / "compressed.pth"

    def distill_stage():
        echo(f"[1/5] CaKD distillation of {cfg.student} from {teacher_ckpt}")
        tcfg = TrainConfig(epochs=cfg.distill_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           num_workers=cfg.num_workers, seed=cfg.seed)
        distill(teacher_ckpt, student_cfg, data_root, run / "distill", tcfg, cfg.distill, resume=True)

    def prune_stage():
        echo(f"[2/5] {cfg.prune.method} importance pruning to {cfg.prune.target:.2f} x FLOPs")
        student, _ = load_detector(dist_ckpt)
        batches = calibration_batches(student, data_root, cfg.prune.calib_frames, cfg.prune.calib_batch)
        pruned, report = prune_model(student, batches, cfg.prune)
        (run / "prune").mkdir(parents=True, exist_ok=True)
        (run / "prune" / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
        save_checkpoint(pruned_ckpt, pruned, pruned.cfg, meta={"kind": "pruned", "prune_report": report})

    def finetune_stage():
        echo(f"[3/5] fine-tuning the pruned student with CaKD ({cfg.finetune_epochs} epochs)")
        pruned, _ = load_detector(pruned_ckpt)
        tcfg = TrainConfig(epochs=cfg.finetune_epochs, batch_size=cfg.batch_size, lr=cfg.finetune_lr,
                           num_workers=cfg.num_workers, seed=cfg.seed + 1)
        distill(teacher_ckpt, pruned.cfg, data_root, run / "finetune", tcfg, cfg.distill, resume=True,
                student_model=pruned.train())

    def redundancy_stage():
        echo("[4/5] switching on IoU-aware redundancy elimination")
        model, _ = load_detector(ft_ckpt)
        n = len(model.cfg.class_names)
        if len(cfg.redundancy.beta) != n:
            raise ValueError(f"redundancy config has {len(cfg.redundancy.beta)} per-class values for {n} classes")
        model.cfg = model.cfg.replace(post=model.cfg.post.replace(redundancy=cfg.redundancy))
        save_checkpoint(final_ckpt, model, model.cfg, meta={"kind": "compressed", "teacher": str(teacher_ckpt),
                                                          "compress_config": cfg.to_dict()})

    # each stage declares what decides its output; a run directory made with other settings is refused.
    # The training frames (ids, labels, calibs, point files' sizes and times) are part of every key.
    data_id = dataset_fingerprint(KittiReader(data_root, "train"))
    train = dict(batch_size=cfg.batch_size, seed=cfg.seed, distill=cfg.distill.to_dict(), data=data_id)
    stages = [
        Stage("distill", dist_ckpt, distill_stage, dict(student=cfg.student, epochs=cfg.distill_epochs, lr=cfg.lr, **train),
              (teacher_ckpt,)),
        Stage("prune", pruned_ckpt, prune_stage, dict(prune=cfg.prune.to_dict(), data=data_id), (dist_ckpt,)),
        Stage("finetune", ft_ckpt, finetune_stage, dict(epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, **train),
              (teacher_ckpt, pruned_ckpt)),
        Stage("redundancy", final_ckpt, redundancy_stage, dict(redundancy=cfg.redundancy.to_dict()), (ft_ckpt,)),
    ]
    timings = {}
    for stage in stages:
        t0 = time.time()
        run_stage(stage)
        timings[stage.name] = time.time() - t0
    # 5. evaluation and report
    echo("[5/5] evaluating teacher and students")
    results = {}
    for key, ckpt in [("teacher", Path(teacher_ckpt)), ("distilled", dist_ckpt), ("pruned+finetuned", ft_ckpt),
                      ("compressed (+RE)", final_ckpt)]:
        results[key] = _evaluate(ckpt, data_root, cfg.eval_split, run / "eval" / key.split()[0], cfg.latency_frames,
                                 cfg.bench_threads)
    report = {"config": cfg.to_dict(), "timings_s": timings, "results": results}
    t, s = results["teacher"], results["compressed (+RE)"]
    report["ratios"] = {"ap": s["mean_moderate_3d"] - t["mean_moderate_3d"], "params": t["params"] / s["params"],
                        "flops": t["gmacs"] / max(s["gmacs"], 1e-9), "latency": t["latency_ms"] / s["latency_ms"],
                        "memory": BenchResult.from_dict(t).peak_memory_mb / max(BenchResult.from_dict(s).peak_memory_mb, 1e-3)}
    (run / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [{"label": k, "latency_ms": v["latency_ms"], "accuracy": v["mean_moderate_3d"], "params_m": v["params"] / 1e6}
            for k, v in results.items()]
    accuracy_latency_plot(rows, run / "accuracy_vs_latency.png", "CLEAN compression: accuracy vs CPU latency")
    (run / "report.md").write_text(report_markdown(report))
    echo(report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    """Per-class moderate 3D AP (whatever classes the detector has), size, compute, latency, memory."""
    results = report["results"]
    classes = [c for c in next(iter(results.values()))["ap"] if not c.startswith("_")]  # "_R11": the 11-point APs
    lines = markdown_table(
        ["model", *(f"{c} 3D mod" for c in classes), "mean mod 3D", "params (M)", "GMACs", "CPU p50 ms", "peak mem (MB)"],
        [[k, *(f"{v['ap'][c]['3d']['moderate']:.2f}" for c in classes), f"{v['mean_moderate_3d']:.2f}",
          f"{v['params'] / 1e6:.3f}", f"{v['gmacs']:.2f}", f"{v['latency_ms']:.0f}",
          f"{BenchResult.from_dict(v).peak_memory_mb:.0f}"] for k, v in results.items()])
    r = report["ratios"]
    lines.append("")
    lines.append(f"compressed vs teacher: mean moderate 3D AP {r['ap']:+.2f}, {r['params']:.1f}x fewer parameters, "
                 f"{r['flops']:.1f}x fewer MACs, {r['latency']:.1f}x lower CPU latency, "
                 f"{r['memory']:.1f}x lower peak memory")
    return "\n".join(lines) + "\n"
