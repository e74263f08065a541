"""CLEAN ablation on the synthetic benchmark (the table of the compression issue):

    teacher | student plain | + student-oriented KD | + label-assignment KD (= CaKD)
    | + pruning at the same FLOPs: masked category importance / L1 / random / unmasked
    | + IoU-aware redundancy elimination (= CLEAN)

    .venv/bin/python benchmarks/ablation.py            # reuses benchmarks/runs/ (baselines first)

Columns: 3D AP easy/mod/hard per class, mean moderate, params, FLOPs, CPU latency, peak memory.
Writes benchmarks/results/ablation.{json,md} and an accuracy-vs-latency plot. Every run dir is
reused when its model exists, so the script resumes after an interruption.
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from clean_deploy.bench.plots import accuracy_latency_plot
from clean_deploy.bench.run import BenchJob, run_job_cached
from clean_deploy.compress.config import DistillConfig, PruneConfig
from clean_deploy.compress.distill.run import distill
from clean_deploy.compress.prune.run import calibration_batches, prune_model
from clean_deploy.config import TrainConfig
from clean_deploy.models.config import RedundancyConfig
from clean_deploy.models.zoo import get_config
from clean_deploy.train.checkpoint import load_checkpoint, load_detector, save_checkpoint
from clean_deploy.train.loop import train

CLASSES = ("Car", "Pedestrian", "Cyclist")


def evaluate(ckpt: Path, args) -> dict:
    """AP, params, FLOPs, latency and peak memory of one checkpoint, measured in a fresh subprocess
    (the worker of ``clean-deploy bench``); cached next to the checkpoint."""
    r = run_job_cached(BenchJob(str(ckpt), "torch"), args.data, "val", args.latency_frames, 3, args.threads,
                       ckpt.parent / f"ablation_bench_{ckpt.stem}", ckpt.parent / f"ablation_bench_{ckpt.stem}.json")
    return {"checkpoint": str(ckpt), "ap": r["ap"], "mean_moderate_3d": r["mean_moderate_3d"],
            **{k: r[k] for k in ("params", "gmacs", "gflops", "weight_mb")},
            "latency_ms": r["latency"]["stages_ms"]["total"]["p50"], "peak_mem_mb": r["memory"]["peak_inference_mb"],
            "train_seconds": load_checkpoint(ckpt)["meta"].get("train_seconds")}


def tcfg(args, epochs: int, lr: float | None = None, seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=lr or args.lr, num_workers=2, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("benchmarks/data/synth"))
    ap.add_argument("--runs", type=Path, default=Path("benchmarks/runs"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--teacher", type=Path, default=None, help="default: RUNS/teacher/model.pth (baselines.py)")
    ap.add_argument("--student", default="centerpoint_fast@0.5x+iou",
                    help="the student (with '+iou'); a heterogeneous pair with the anchor-based two-stage teacher")
    ap.add_argument("--baseline", default="centerpoint", help="run dir of the same student in baselines.py")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--finetune-epochs", type=int, default=6)
    ap.add_argument("--target-flops", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--latency-frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the latency measurement")
    ap.add_argument("--prune-methods", nargs="*", default=["masked", "l1", "random", "unmasked"])
    ap.add_argument("--kd-from-plain", type=int, default=0, metavar="K",
                    help="instead of distilling from scratch for --epochs, start the KD students from the trained "
                         "plain student and distil for K epochs; a control row trains the plain student K more "
                         "epochs without KD (same schedule), so the KD gain is measured against equal training")
    args = ap.parse_args()
    teacher = args.teacher or args.runs / "teacher" / "model.pth"
    kept = Path(__file__).resolve().parent / "checkpoints" / "teacher_voxel_rcnn_fast.pth"
    if args.teacher is None and not teacher.is_file() and kept.is_file():
        teacher = kept  # the repository's fp16 copy (benchmarks/teacher.py): no retraining on a new machine
    if not teacher.is_file():
        raise SystemExit(f"teacher checkpoint {teacher} missing: run benchmarks/teacher.py (or baselines.py --only "
                         "teacher) first")
    root = args.runs / "ablation"
    student = get_config(args.student)
    if not (student.anchor_head or student.center_head).iou_branch:
        raise SystemExit(f"{args.student}: the ablation needs the IoU-quality branch (append '+iou')")
    rows: list[tuple[str, Path]] = [("teacher", teacher)]
    t0 = time.time()

    def run_plain(name: str) -> Path:
        baseline = args.runs / args.baseline / "model.pth"  # benchmarks/baselines.py trains the same student
        if baseline.is_file():
            ck = load_checkpoint(baseline)
            if ck["config"] == student and ck["meta"].get("epochs") == args.epochs:
                return baseline
        ck = root / name / "model.pth"
        if not ck.is_file():
            train(student, args.data, root / name, tcfg(args, args.epochs), resume=True)
        return ck

    def run_kd(name: str, dcfg: DistillConfig) -> Path:
        if args.kd_from_plain:
            name = f"{name}_from_plain{args.kd_from_plain}"
        ck = root / name / "model.pth"
        if not ck.is_file():
            if args.kd_from_plain:
                init, _ = load_detector(plain)
                distill(teacher, student, args.data, root / name, tcfg(args, args.kd_from_plain, args.lr / 2, seed=1),
                        dcfg, resume=True, student_model=init.train(), meta={"init": str(plain)})
            else:
                distill(teacher, student, args.data, root / name, tcfg(args, args.epochs), dcfg, resume=True)
        return ck

    plain = run_plain("plain")
    rows.append(("student plain", plain))
    if args.kd_from_plain:
        ck = root / f"plain_plus{args.kd_from_plain}" / "model.pth"
        if not ck.is_file():
            init, _ = load_detector(plain)
            train(student, args.data, ck.parent, tcfg(args, args.kd_from_plain, args.lr / 2, seed=1), resume=True,
                  model=init.train(), meta={"init": str(plain)})
        rows.append((f"student plain + {args.kd_from_plain} epochs (no KD, control)", ck))
    so = DistillConfig(label_assignment=False)
    rows.append(("+ student-oriented KD", run_kd("kd_so", so)))
    cakd = DistillConfig()
    cakd_ck = run_kd("kd_cakd", cakd)
    rows.append(("+ label-assignment KD (CaKD)", cakd_ck))
    # pruning at the same FLOPs from the CaKD student, fine-tuned with CaKD
    masked_ft = None
    for method in args.prune_methods:
        d = root / f"prune_{method}"
        ft = d / "finetune" / "model.pth"
        if not ft.is_file():
            if not (d / "pruned.pth").is_file():
                det, _ = load_detector(cakd_ck)
                batches = calibration_batches(det, args.data, 8, 4)
                pruned, rep = prune_model(det, batches, PruneConfig(method=method, target=args.target_flops))
                save_checkpoint(d / "pruned.pth", pruned, pruned.cfg, meta={"kind": "pruned", "prune_report": rep})
                (d / "prune_report.json").write_text(json.dumps(rep, indent=2) + "\n")
            pruned, _ = load_detector(d / "pruned.pth")
            distill(teacher, pruned.cfg, args.data, d / "finetune", tcfg(args, args.finetune_epochs, args.lr / 2, seed=1),
                    cakd, resume=True, student_model=pruned.train())
        rows.append((f"+ pruning ({method} importance, {args.target_flops:.1f}x FLOPs)", ft))
        if method == "masked":
            masked_ft = ft
    # IoU-aware redundancy elimination on the masked-pruned student
    if masked_ft is not None:
        final = root / "clean" / "compressed.pth"
        if not final.is_file() or final.stat().st_mtime < masked_ft.stat().st_mtime:
            model, _ = load_detector(masked_ft)
            model.cfg = model.cfg.replace(post=model.cfg.post.replace(redundancy=RedundancyConfig()))
            save_checkpoint(final, model, model.cfg, meta={"kind": "compressed", "teacher": str(teacher)})
        rows.append(("+ IoU-aware RE (CLEAN)", final))
    results = [{"row": name, **evaluate(ck, args)} for name, ck in rows]
    doc = {"date": str(date.today()), "student": args.student, "epochs": args.epochs,
           "kd_from_plain_epochs": args.kd_from_plain,
           "finetune_epochs": args.finetune_epochs, "target_flops": args.target_flops, "rows": results,
           "wall_seconds": time.time() - t0}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(doc)
    (args.out / "ablation.md").write_text(md)
    accuracy_latency_plot([{"label": r["row"], "latency_ms": r["latency_ms"], "accuracy": r["mean_moderate_3d"],
                            "params_m": r["params"] / 1e6} for r in results],
                          args.out / "ablation_accuracy_vs_latency.png", "CLEAN ablation (CPU, PyTorch eager)")
    print(md)


def markdown(doc: dict) -> str:
    lines = [f"# CLEAN ablation ({doc['date']}): student `{doc['student']}`, {doc['epochs']} epochs, "
             f"fine-tuning {doc['finetune_epochs']} epochs after pruning to {doc['target_flops']}x FLOPs", "",
             *([f"KD rows start from the trained plain student and distil for {doc['kd_from_plain_epochs']} epochs "
                "(lr/2, one-cycle); the control row trains it as long without KD.", ""]
               if doc.get("kd_from_plain_epochs") else []),
             "AP_R40 (%) on the synthetic val split, KITTI protocol. Latency: PyTorch eager, CPU, batch 1, one "
             "subprocess per row; peak mem = weights + peak RSS growth while running frames.", "",
             "| row | " + " | ".join(f"{c} 3D e/m/h" for c in CLASSES) + " | mean mod | params (M) | GMACs | CPU p50 ms "
             "| peak mem MB |", "|---" * (6 + len(CLASSES)) + "|"]
    for r in doc["rows"]:
        aps = " | ".join("/".join(f"{r['ap'][c]['3d'][d]:.1f}" for d in ("easy", "moderate", "hard")) for c in CLASSES)
        lines.append(f"| {r['row']} | {aps} | {r['mean_moderate_3d']:.2f} | {r['params'] / 1e6:.3f} | {r['gmacs']:.2f} "
                     f"| {r['latency_ms']:.0f} | {r['peak_mem_mb']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
