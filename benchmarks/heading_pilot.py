"""Heading pilot: does the way the centre head learns its heading limit the students' Car AP?

The ablation's box errors (ablation.md) show the students' matched cars as well centred, sized and
placed in height as the teacher's, but with 3x its heading error. This pilot trains the ablation's
plain student (``centerpoint_fast@0.5x+iou``, 12 epochs, the ablation's seeds, data and schedule) in
variants that change only the heading / box-regression learning, and scores them on the **val**
split (a choice; the ablation's test split is not read):

    sincos       the ablation's student: (cos t, sin t) regressed, box loss weight 0.25
    sincos_box1  the same with box loss weight 1.0
    axis         '+axis': (cos 2t, sin 2t) + a forward/backward logit (clean_deploy CenterHeadConfig.heading)
    axis_up2     '+axis+up2': the same, predicting on 0.4 m instead of 0.8 m cells (the BEV backbone
                 upsamples 2x further; the output stride of OpenPCDet's KITTI CenterPoint), a test of
                 whether the students' coarse output map limits their Car AP at 3D IoU 0.7

    .venv/bin/python benchmarks/heading_pilot.py --variants sincos axis --seeds 0 1 2

Resumable: a (variant, seed) whose JSON exists in benchmarks/results/heading_pilot/ is skipped, a run
directory resumes its training. ``axis_pi2cut_s0.json`` is the first '+axis' version's run (its
forward/backward cut at +-pi/2), kept as a record. Writes heading_pilot.{json,md}.
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

STUDENT = "centerpoint_fast@0.5x+iou"
VARIANTS = {"sincos": (STUDENT, None), "sincos_box1": (STUDENT, 1.0), "axis": (STUDENT + "+axis", None),
            "axis_up2": (STUDENT + "+axis+up2", None)}
CLASSES = ("Car", "Pedestrian", "Cyclist")


def variant_config(variant: str):
    from clean_deploy.models.zoo import get_config

    name, box = VARIANTS[variant]
    cfg = get_config(name)
    if box is not None:
        dh = cfg.dense_head
        cfg = cfg.replace(dense_head=dh.replace(loss_weights=dh.loss_weights.replace(box=box)))
    return cfg


def run_unit(variant: str, seed: int, args) -> dict:
    import torch

    from clean_deploy.config import TrainConfig
    from clean_deploy.models.checkpoint import load_detector
    from clean_deploy.models.detector import build_detector
    from clean_deploy.train.evaluate import predict_split
    from clean_deploy.train.loop import train

    cfg = variant_config(variant)
    d = args.runs / f"{variant}_s{seed}"
    if not (d / "model.pth").is_file():
        torch.manual_seed(seed)  # the ablation's initial weights of this seed
        train(cfg, args.data, d, TrainConfig(epochs=args.epochs, batch_size=4, lr=0.003, num_workers=0, seed=seed),
              resume=True, model=build_detector(cfg))
    model, _ = load_detector(d / "model.pth")
    pred = d / "pred_val"
    predict_split(model, args.data, "val", pred_dir=pred, progress=True)
    return score(variant, seed, cfg, pred, args) | {"direction_cut": "pi/4" if cfg.dense_head.heading == "axis" else None,
                                                    "cell_m": model.dense_head.cell_size()[0]}


def score(variant: str, seed: int, cfg, pred: Path, args) -> dict:
    """The unit's record from its val predictions."""
    from clean_deploy.bench.run import machine_description
    from clean_deploy.eval.tp_errors import tp_errors_dirs
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap

    rng = cfg.point_cloud_range
    ap = evaluate_predictions(args.data, "val", pred, CLASSES, eval_range=rng)
    tp = tp_errors_dirs(args.data, "val", pred, CLASSES, eval_range=rng, min_score=0.3)
    return {"variant": variant, "seed": seed, "config": cfg.name, "box_weight": cfg.dense_head.loss_weights.box,
            "heading": cfg.dense_head.heading, "epochs": args.epochs, "date": date.today().isoformat(),
            "machine": machine_description(), "val_mean_moderate_3d": mean_moderate_ap(ap),
            "ap_3d": {c: ap[c]["3d"] for c in CLASSES}, "ap_bev": {c: ap[c]["bev"] for c in CLASSES},
            "tp_errors_score_0.3": tp}


def render(units: list[dict]) -> str:
    rows = []
    cut = lambda u: u.get("direction_cut") or ("-" if u["heading"] != "axis" else "pi/2")  # noqa: E731
    for v, c in sorted({(u["variant"], cut(u)) for u in units}, key=lambda vc: (list(VARIANTS).index(vc[0]), vc[1])):
        us = [u for u in units if u["variant"] == v and cut(u) == c]
        def ms(xs):  # noqa: E306
            return f"{statistics.fmean(xs):.2f}" + (f" +- {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")
        car = [u["tp_errors_score_0.3"]["Car"] for u in us]
        rows.append([v, len(us), ms([u["val_mean_moderate_3d"] for u in us]),
                     ", ".join(f"{u['val_mean_moderate_3d']:.2f}" for u in us),
                     ms([u["ap_3d"]["Car"]["moderate"] for u in us]), ms([u["ap_bev"]["Car"]["moderate"] for u in us]),
                     f"{statistics.fmean(x['orientation_axis']['median'] for x in car):.3f}",
                     f"{statistics.fmean(x['orientation_axis']['mean'] for x in car):.3f}",
                     f"{100 * statistics.fmean(x['orientation_axis']['frac_off'] for x in car):.1f} %",
                     f"{statistics.fmean(x['height']['median'] for x in car):.3f}", c,
                     f"{us[0].get('cell_m', 0.8):.1f}"])
    d = units[0]
    return "\n".join([f"# Heading pilot ({d['date']}): plain `{STUDENT}` students, val split", "",
                      f"{d['machine']}. {d['epochs']} epochs, batch 4, AdamW one-cycle lr 0.003, the ablation's seeds "
                      "(initial weights and data order) and data (300 train frames, 500 val frames of data seed 0). "
                      "Val only: a pilot for a choice, not a result. Car box errors: true positives with score >= 0.3, "
                      "heading folded to [0, pi/2] (what the IoU sees), `clean_deploy/eval/tp_errors.py`.", ""]
                     + markdown_table(["variant", "seeds", "val mean mod 3D", "per seed", "Car mod 3D", "Car mod BEV",
                                       "Car heading median", "Car heading mean", "Car > 0.3 rad", "Car height median",
                                       "direction cut", "head cell (m)"], rows)
                     + ["", "Direction cut: where the '+axis' head's forward/backward label flips (pi/4 since the commit "
                        "after e8ece93; units without the field ran with the first version's cut at +-pi/2, where the "
                        "synthetic crossing traffic is; the 3D and BEV IoU, and so the AP, do not see the direction)."]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "synth")
    ap.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / "heading_pilot")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--rescore", action="store_true",
                    help="recompute the metrics of finished units from their run directories' val predictions")
    args = ap.parse_args(argv)
    ensure_data(args.data, 300, 500, 0)
    res_dir = args.out / "heading_pilot"
    for v in args.variants:
        for s in args.seeds:
            p = res_dir / f"{v}_s{s}.json"
            if p.is_file() and args.rescore:  # the metrics again from the stored predictions (same model)
                u = json.loads(p.read_text())
                pred = args.runs / f"{v}_s{s}" / "pred_val"
                if pred.is_dir():
                    u.update(score(v, s, variant_config(v), pred, args) | {"date": u["date"], "machine": u["machine"]})
                    atomic_write(p, lambda f: f.write((json.dumps(u, indent=1) + "\n").encode()))
                continue
            if p.is_file():
                continue
            print(f"[heading_pilot] {v} seed {s}", flush=True)
            u = run_unit(v, s, args)
            atomic_write(p, lambda f: f.write((json.dumps(u, indent=1) + "\n").encode()))
    units = [json.loads(p.read_text()) for p in sorted(res_dir.glob("*.json"))]
    if units:
        atomic_write(args.out / "heading_pilot.json", lambda f: f.write((json.dumps(units, indent=1) + "\n").encode()))
        md = render(units)
        (args.out / "heading_pilot.md").write_text(md)
        print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
