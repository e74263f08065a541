"""Label-assignment pilot: does the teacher's quality, as CaKD folds it into the student's targets,
cost the pedestrians their AP?

In the '+axis' ablation (test split, ``ablation@<student>.md``) the 12-epoch CaKD students gain 20
Car AP over the plain ones but only 4 Pedestrian AP and lose 5 Cyclist AP; against plain students
trained 24 epochs they are +2 Car, -6 Pedestrian, -7 Cyclist, and the class gap to the teacher is
largest for pedestrians. The teacher's class-aware quality (second-stage IoU confidence x
first-stage class probability) is lower for pedestrians than for cars (about 0.28 vs 0.48 on
training batches), so the default label assignment gives pedestrian peaks lower soft targets and,
with regression weights normalised over the whole batch, moves box-loss weight from pedestrians to
cars. This pilot trains the ablation's CaKD student (12 epochs, the ablation's seeds, data, teacher
and schedule) in variants that change only the label assignment, scored on the **val** split (a
choice; the ablation's test split is not read):

    cakd          the ablation's CaKD recipe (DistillConfig defaults), run again on this machine
    iou_quality   the teacher's quality without its class probability (la_class_aware off)
    class_norm    regression weights normalised per class (la_class_norm on)
    iou_branch    the quality shapes only the IoU branch's target (la_target "iou_branch", the form
                  of the paper's centre-head code): peaks and regression train as without KD
    box_gamma0    soft peaks as the default, regression unweighted (la_box_gamma 0): the CaKD
                  students' median pedestrian heading error (test, 3 seeds) is 0.357 rad against
                  0.164 for the plain and 0.150 for the student-oriented-KD-only student, and the
                  label assignment's quality-weighted regression is what gives pedestrians less
                  box-loss weight (mean 0.72)
    hard_peaks    hard peaks weighted by the quality instead of soft peak targets (la_soft_peaks off)

    .venv/bin/python benchmarks/kd_pilot.py --variants iou_quality class_norm --seeds 0
    .venv/bin/python benchmarks/kd_pilot.py --quality-batches 25   # the per-class quality statistics only

The table also lists the ablation's own ``plain`` and ``cakd`` units of each seed (val), which may have run on
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
from ablation import sha256  # noqa: E402  (the ablation's teacher digest)
from baselines import ensure_data  # noqa: E402

from clean_deploy.atomic import atomic_write  # noqa: E402
from clean_deploy.bench.results import markdown_table  # noqa: E402

STUDENT = "centerpoint_fast@0.5x+iou+axis"
TEACHER = ROOT / "benchmarks" / "checkpoints" / "teacher_voxel_rcnn_fast.pth"
VARIANTS = {"cakd": {}, "iou_quality": {"la_class_aware": False}, "class_norm": {"la_class_norm": True},
            "iou_branch": {"la_target": "iou_branch"}, "box_gamma0": {"la_box_gamma": 0.0},
            "hard_peaks": {"la_soft_peaks": False}}
CLASSES = ("Car", "Pedestrian", "Cyclist")


def protocol(args) -> dict:
    """What a unit's result depends on besides its variant and seed."""
    return {"student": args.student, "epochs": args.epochs, "teacher_sha": args.teacher_sha}


def protocol_tag(args) -> str:
    return f"{args.student}_e{args.epochs}_{args.teacher_sha[:8]}"


def run_unit(variant: str, seed: int, args) -> dict:
    import torch

    from clean_deploy.bench.run import machine_description
    from clean_deploy.compress.config import DistillConfig
    from clean_deploy.compress.distill.run import distill
    from clean_deploy.config import TrainConfig
    from clean_deploy.eval.tp_errors import tp_errors_dirs
    from clean_deploy.models.checkpoint import load_checkpoint, load_detector
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap, predict_split

    cfg = get_config(args.student)
    dcfg = DistillConfig(**VARIANTS[variant])
    d = args.runs / protocol_tag(args) / f"{variant}_s{seed}"
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
    return {"variant": variant, "seed": seed, **protocol(args), "distill_config": dcfg.to_dict(), "date": date.today().isoformat(), "machine": machine_description(),
            "train_seconds": meta.get("train_seconds"), "val_mean_moderate_3d": mean_moderate_ap(ap),
            "ap_3d": {c: ap[c]["3d"] for c in CLASSES}, "ap_bev": {c: ap[c]["bev"] for c in CLASSES},
            "tp_errors": tp_errors_dirs(args.data, "val", pred, CLASSES, eval_range=cfg.point_cloud_range)}


def quality_statistics(args, batches: int) -> dict:
    """Per class, over ``batches`` training batches of the ablation's loader (seed 0, augmented as in
    training): the teacher's quality of the GT boxes (class-aware and IoU-only) and the regression
    weights the default label assignment gives them (quality normalised over the batch)."""
    import tempfile

    import torch

    from clean_deploy.bench.run import machine_description
    from clean_deploy.compress.config import DistillConfig
    from clean_deploy.compress.distill.cakd import CaKDLoss
    from clean_deploy.compress.distill.label_assignment import distilled_targets, teacher_gt_quality
    from clean_deploy.config import TrainConfig
    from clean_deploy.models.checkpoint import load_detector
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.loop import Trainer

    teacher, _ = load_detector(args.teacher)
    cfg = get_config(args.student)
    torch.manual_seed(0)
    student = build_detector(cfg)
    dcfg = DistillConfig()
    kd = CaKDLoss(teacher, student, dcfg)
    vals = {c: {"class_aware": [], "iou_only": [], "weight": []} for c in CLASSES}
    with tempfile.TemporaryDirectory() as run, torch.no_grad():
        tr = Trainer(cfg, TrainConfig(epochs=1, batch_size=4, num_workers=0, seed=0), args.data, run, progress=False,
                     model=student, loss_fn=kd, extra_modules=kd.extra_modules())
        if batches > tr.steps_per_epoch:
            raise SystemExit(f"--quality-batches: {batches} is more than the {tr.steps_per_epoch} batches of one epoch")
        it = iter(tr._loader(0))
        for _ in range(batches):
            batch = next(it)
            t_out = kd.teacher(kd._teacher_batch(batch))  # as CaKDLoss sees the batch
            gt = batch["gt_boxes"]
            aware = teacher_gt_quality(kd.teacher, t_out, gt, class_aware=True)
            iou = teacher_gt_quality(kd.teacher, t_out, gt, class_aware=False)
            # the default label assignment's regression weights: the head's objects, batch-wide mean 1
            t = distilled_targets(student.dense_head, student(batch)["dense"], gt, aware, dcfg.la_alpha,
                                  dcfg.la_box_gamma, dcfg.la_soft_peaks)
            if "obj_weight" not in t:
                raise SystemExit(f"--student: {args.student} has no centre head (the statistics read its obj_weight)")
            for i, c in enumerate(CLASSES):
                sel = t["mask"] & (t["classes"] == i + 1)
                vals[c]["class_aware"] += aware[sel].tolist()
                vals[c]["iou_only"] += iou[sel].tolist()
                vals[c]["weight"] += t["obj_weight"][sel].tolist()

    def stats(x: list[float]) -> dict | None:
        return {"mean": statistics.fmean(x), "median": statistics.median(x)} if x else None

    return {"date": date.today().isoformat(), "machine": machine_description(), "batches": batches,
            **protocol(args), "per_class": {c: {"objects": len(v["weight"]), **{k: stats(x) for k, x in v.items()}}
                                            for c, v in vals.items()}}


def ablation_reference(args, seeds: list[int]) -> list[dict]:
    """The ablation's own CaKD and plain units of ``seeds`` (val), in the pilot's record format."""
    out = []
    study = "ablation" if args.student == "centerpoint_fast@0.5x+iou" else f"ablation@{args.student}"
    for row, s in [(row, s) for row in ("plain", "cakd") for s in seeds]:
        p = args.out / study / f"{row}_s{s}.json"
        if p.is_file():
            u = json.loads(p.read_text())
            out.append({"variant": f"{row} (ablation unit)", "seed": s, "date": u["date"], "machine": u["machine"],
                        "val_mean_moderate_3d": u["val"]["mean_moderate_3d"], "ap_3d": u["val"]["ap_3d"],
                        "ap_bev": u["val"]["ap_bev"], "tp_errors": u["val"].get("tp_errors")})
    return out


def heading(units: list[dict], cls: str) -> str:
    """Mean over ``units`` of the median axis error (rad, folded to [0, pi/2]) of ``cls``'s matched
    detections (val); "-" when a unit has none stored (units from before they were recorded)."""
    if any(not u.get("tp_errors") for u in units):
        return "-"
    return f"{statistics.fmean(u['tp_errors'][cls]['orientation_axis']['median'] for u in units):.3f}"


def render(units: list[dict], reference: list[dict], student: str, epochs: int) -> str:
    def ms(xs):
        return f"{statistics.fmean(xs):.2f}" + (f" +- {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")

    rows = []
    order = ["plain (ablation unit)", "cakd (ablation unit)"] + list(VARIANTS)
    everything = reference + units
    for v in [v for v in order if any(u["variant"] == v for u in everything)]:
        us = sorted((u for u in everything if u["variant"] == v), key=lambda u: u["seed"])
        rows.append([v, ", ".join(str(u["seed"]) for u in us), ms([u["val_mean_moderate_3d"] for u in us]),
                     ", ".join(f"{u['val_mean_moderate_3d']:.2f}" for u in us),
                     *(ms([u["ap_3d"][c]["moderate"] for u in us]) for c in CLASSES),
                     heading(us, "Car"), heading(us, "Pedestrian"), ", ".join(sorted({u["date"] for u in us}))])
    machines = sorted({u["machine"] for u in everything})
    return "\n".join([f"# Label-assignment pilot: CaKD `{student}` students, val split", "",
                      f"{epochs}-epoch CaKD students with the ablation's seeds (initial weights and data order), data "
                      "(300 train frames, 500 val frames of data seed 0), teacher and schedule (batch 4, AdamW "
                      "one-cycle lr 0.003); only the label assignment differs (`benchmarks/kd_pilot.py`). Val only: "
                      "a pilot for a choice, not a result. Moderate 3D AP_R40 (%). Machines: " + "; ".join(machines)
                      + ". Runs of one seed on different machines are not bitwise paired (float rounding "
                      "differs between CPU kernels, and training amplifies it).", ""]
                     + markdown_table(["variant", "seeds", "val mean mod 3D", "per seed", "Car", "Pedestrian",
                                       "Cyclist", "Car heading", "Ped heading", "date"], rows)
                     + ["", "Heading: median axis error (rad, folded to [0, pi/2]) of the matched detections on val "
                        "(`clean_deploy/eval/tp_errors.py`), mean over the seeds; '-': a unit stored before it was "
                        "recorded."]) + "\n"


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
    ap.add_argument("--quality-batches", type=int, default=0,
                    help="only measure the teacher's per-class quality over this many training batches")
    args = ap.parse_args(argv)
    from clean_deploy.models.zoo import get_config

    if not args.teacher.is_file():
        raise SystemExit(f"--teacher: {args.teacher} is not a file (expected a two-stage teacher checkpoint)")
    try:
        get_config(args.student)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"--student: {args.student!r} is not a detector config ({e})")
    if args.quality_batches < 0 or args.epochs < 1:
        raise SystemExit("--quality-batches must be >= 0 and --epochs >= 1")
    args.teacher_sha = sha256(args.teacher)
    ensure_data(args.data, 300, 500, 0)
    if args.quality_batches > 0:
        q = quality_statistics(args, args.quality_batches)
        atomic_write(args.out / "kd_pilot_quality.json", lambda f: f.write((json.dumps(q, indent=1) + "\n").encode()))
        for c, v in q["per_class"].items():
            if v["objects"]:
                print(f"{c}: {v['objects']} objects, class-aware quality mean {v['class_aware']['mean']:.3f}, IoU-only "
                      f"{v['iou_only']['mean']:.3f}, regression weight mean {v['weight']['mean']:.3f}")
        return 0
    res_dir = args.out / "kd_pilot"
    for v in args.variants:
        for s in args.seeds:
            p = res_dir / f"{v}_s{s}.json"
            if p.is_file():
                stored = {k: json.loads(p.read_text()).get(k) for k in protocol(args)}
                if stored != protocol(args):
                    raise SystemExit(f"{p}: a unit of another protocol ({stored}, asked {protocol(args)}); "
                                     "move it away or pass --out")
                continue
            print(f"[kd_pilot] {v} seed {s}", flush=True)
            u = run_unit(v, s, args)
            atomic_write(p, lambda f: f.write((json.dumps(u, indent=1) + "\n").encode()))
    units = [u for u in (json.loads(p.read_text()) for p in sorted(res_dir.glob("*.json")))
             if {k: u.get(k) for k in protocol(args)} == protocol(args)]
    if units:
        ref = ablation_reference(args, sorted({u["seed"] for u in units})) if args.epochs == 12 else []
        atomic_write(args.out / "kd_pilot.json", lambda f: f.write((json.dumps(units, indent=1) + "\n").encode()))
        md = render(units, ref, args.student, args.epochs)
        atomic_write(args.out / "kd_pilot.md", lambda f: f.write(md.encode()))
        print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
