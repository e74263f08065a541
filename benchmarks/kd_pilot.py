"""Label-assignment pilot: does the teacher's quality, as CaKD folds it into the student's targets,
cost the pedestrians their AP?

In the '+axis' ablation the CaKD students gain Car AP over the plain ones but keep the lowest
Pedestrian AP of any 12-epoch row trained as long (val; ``ablation@<student>.md``), and the class gap to the teacher
is largest for pedestrians. The teacher's class-aware quality (second-stage IoU confidence x
first-stage class probability) is lower for pedestrians than for cars (about 0.28 vs 0.48 on
training batches), so the default label assignment gives pedestrian peaks lower soft targets and,
with regression weights normalised over the whole batch, moves box-loss weight from pedestrians to
cars. This pilot trains the ablation's CaKD student (12 epochs, the ablation's seeds, data, teacher
and schedule) in variants that change only the label assignment, scored on the **val** split (a
choice; the ablation's test split is not read):

    cakd          the ablation's CaKD recipe (DistillConfig defaults), run again on this machine
    iou_quality   the teacher's quality without its class probability (la_class_aware off)
    class_norm    regression weights normalised per class (la_class_norm on)

    .venv/bin/python benchmarks/kd_pilot.py --variants iou_quality class_norm --seeds 0

The table also lists the ablation's own ``cakd`` unit of each seed (val), which may have run on
another machine. Resumable: a (variant, seed) whose JSON exists in ``benchmarks/results/kd_pilot/``
is skipped, a run directory resumes its training. Writes ``kd_pilot.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from baselines import ensure_data  # noqa: E402

from clean_deploy.atomic import atomic_write  # noqa: E402
from clean_deploy.bench.results import markdown_table  # noqa: E402

STUDENT = "centerpoint_fast@0.5x+iou+axis"
TEACHER = ROOT / "benchmarks" / "checkpoints" / "teacher_voxel_rcnn_fast.pth"
VARIANTS = {"cakd": {}, "iou_quality": {"la_class_aware": False}, "class_norm": {"la_class_norm": True}}
CLASSES = ("Car", "Pedestrian", "Cyclist")


def run_unit(variant: str, seed: int, args) -> dict:
    import torch

    from clean_deploy.bench.run import machine_description
    from clean_deploy.compress.config import DistillConfig
    from clean_deploy.compress.distill.run import distill
    from clean_deploy.config import TrainConfig
    from clean_deploy.models.checkpoint import load_checkpoint, load_detector
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap, predict_split

    cfg = get_config(args.student)
    dcfg = DistillConfig(**VARIANTS[variant])
    d = args.runs / f"{variant}_s{seed}"
    if not (d / "model.pth").is_file():
        torch.manual_seed(seed)  # the ablation's initial weights of this seed (its fresh_student)
        distill(args.teacher, cfg, args.data, d,
                TrainConfig(epochs=args.epochs, batch_size=4, lr=0.003, num_workers=0, seed=seed), dcfg,
                resume=True, student_model=build_detector(cfg))
    model, _ = load_detector(d / "model.pth")
    pred = d / "pred_val"
    predict_split(model, args.data, "val", pred_dir=pred, progress=True)
    ap = evaluate_predictions(args.data, "val", pred, CLASSES, eval_range=cfg.point_cloud_range)
    meta = load_checkpoint(d / "model.pth")["meta"]
    return {"variant": variant, "seed": seed, "student": args.student, "distill_config": dcfg.to_dict(),
            "epochs": args.epochs, "date": date.today().isoformat(), "machine": machine_description(),
            "train_seconds": meta.get("train_seconds"), "val_mean_moderate_3d": mean_moderate_ap(ap),
            "ap_3d": {c: ap[c]["3d"] for c in CLASSES}, "ap_bev": {c: ap[c]["bev"] for c in CLASSES}}


def ablation_reference(args, seeds: list[int]) -> list[dict]:
    """The ablation's own CaKD units of ``seeds`` (val), in the pilot's record format."""
    out = []
    study = "ablation" if args.student == "centerpoint_fast@0.5x+iou" else f"ablation@{args.student}"
    for s in seeds:
        p = args.out / study / f"cakd_s{s}.json"
        if p.is_file():
            u = json.loads(p.read_text())
            out.append({"variant": "cakd (ablation unit)", "seed": s, "date": u["date"], "machine": u["machine"],
                        "val_mean_moderate_3d": u["val"]["mean_moderate_3d"], "ap_3d": u["val"]["ap_3d"],
                        "ap_bev": u["val"]["ap_bev"]})
    return out


def render(units: list[dict], reference: list[dict], student: str) -> str:
    def ms(xs):
        return f"{statistics.fmean(xs):.2f}" + (f" +- {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")

    rows = []
    order = ["cakd (ablation unit)"] + list(VARIANTS)
    everything = reference + units
    for v in [v for v in order if any(u["variant"] == v for u in everything)]:
        us = sorted((u for u in everything if u["variant"] == v), key=lambda u: u["seed"])
        rows.append([v, ", ".join(str(u["seed"]) for u in us), ms([u["val_mean_moderate_3d"] for u in us]),
                     ", ".join(f"{u['val_mean_moderate_3d']:.2f}" for u in us),
                     *(ms([u["ap_3d"][c]["moderate"] for u in us]) for c in CLASSES),
                     ", ".join(sorted({u["date"] for u in us}))])
    machines = sorted({u["machine"] for u in everything})
    return "\n".join([f"# Label-assignment pilot: CaKD `{student}` students, val split", "",
                      "12-epoch CaKD students with the ablation's seeds (initial weights and data order), data "
                      "(300 train frames, 500 val frames of data seed 0), teacher and schedule (batch 4, AdamW "
                      "one-cycle lr 0.003); only the label assignment differs (`benchmarks/kd_pilot.py`). Val only: "
                      "a pilot for a choice, not a result. Moderate 3D AP_R40 (%). Machines: " + "; ".join(machines)
                      + ". Runs of one seed on different machines are not bitwise paired (float rounding "
                      "differs between CPU kernels, and training amplifies it).", ""]
                     + markdown_table(["variant", "seeds", "val mean mod 3D", "per seed", "Car", "Pedestrian",
                                       "Cyclist", "date"], rows)) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--student", default=STUDENT)
    ap.add_argument("--teacher", type=Path, default=TEACHER)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "synth")
    ap.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / "kd_pilot")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if not args.teacher.is_file():
        raise SystemExit(f"--teacher: {args.teacher} is not a file (expected a two-stage teacher checkpoint)")
    ensure_data(args.data, 300, 500, 0)
    res_dir = args.out / "kd_pilot"
    for v in args.variants:
        for s in args.seeds:
            p = res_dir / f"{v}_s{s}.json"
            if p.is_file():
                continue
            print(f"[kd_pilot] {v} seed {s}", flush=True)
            u = run_unit(v, s, args)
            atomic_write(p, lambda f: f.write((json.dumps(u, indent=1) + "\n").encode()))
    units = [json.loads(p.read_text()) for p in sorted(res_dir.glob("*.json"))]
    if units:
        ref = ablation_reference(args, sorted({u["seed"] for u in units}))
        atomic_write(args.out / "kd_pilot.json", lambda f: f.write((json.dumps(units, indent=1) + "\n").encode()))
        md = render(units, ref, args.student)
        atomic_write(args.out / "kd_pilot.md", lambda f: f.write(md.encode()))
        print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
