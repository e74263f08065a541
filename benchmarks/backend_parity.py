"""End-to-end accuracy of the two CPU sparse conv backends: the same student trained with spconv
and with clean_deploy's kernels, several seeds each, evaluated on a large validation split.

    .venv/bin/python benchmarks/backend_parity.py                  # 2 seeds x 2 backends
    .venv/bin/python benchmarks/backend_parity.py --seeds 0 1 2

Training as ``benchmarks/baselines.py`` trains the students (12 epochs, batch 4, AdamW one-cycle lr
3e-3) on ``--frames`` synthetic train frames; AP_R40 (KITTI protocol) on ``--val-frames`` val
frames of their own seed. Resumable: every finished (backend, seed) writes
``benchmarks/results/backend_parity/<backend>_seed<k>.json`` and is skipped on re-runs (commit
those files to keep them). Writes ``backend_parity.{json,md}``: mean +- std per backend, the
difference and its standard error, and whether it lies within two standard errors.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "centerpoint_fast@0.5x+iou"

sys.path.insert(0, str(ROOT / "benchmarks"))
from baselines import ensure_data  # noqa: E402  (the same synthetic-data cache)


def run_one(backend: str, seed: int, args) -> dict:
    import torch

    from clean_deploy.config import TrainConfig
    from clean_deploy.models.sparse import describe_backend, set_sparse_backend
    from clean_deploy.models.zoo import get_config
    from clean_deploy.models.checkpoint import load_detector
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap, predict_split
    from clean_deploy.train.loop import train

    out = args.out / f"{backend}_seed{seed}.json"
    if out.is_file():
        return json.loads(out.read_text())
    set_sparse_backend(backend)
    torch.set_num_threads(args.threads)
    run_dir = args.runs / f"{backend}_seed{seed}"
    cfg = get_config(CONFIG)
    t0 = time.time()
    tcfg = TrainConfig(epochs=args.epochs, batch_size=4, lr=0.003, num_workers=2, seed=seed)
    res = train(cfg, args.data, run_dir, tcfg, resume=True, meta={"config_name": CONFIG})
    model, _ = load_detector(res.final_checkpoint)
    pred_dir = run_dir / "pred_val"
    predict_split(model, args.data, "val", pred_dir=pred_dir, progress=True)
    ap = evaluate_predictions(args.data, "val", pred_dir, cfg.class_names, eval_range=cfg.point_cloud_range)
    row = {"backend": backend, "backend_detail": describe_backend("cpu"), "seed": seed, "config": CONFIG,
           "epochs": args.epochs, "train_seconds": res.seconds, "wall_seconds": time.time() - t0,
           "mean_moderate_3d": mean_moderate_ap(ap),
           "moderate_3d": {c: v["3d"]["moderate"] for c, v in ap.items() if not c.startswith("_")},
           "date": date.today().isoformat()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(row, indent=1))
    tmp.replace(out)
    set_sparse_backend(None)
    return row


def summarise(rows: list[dict], backends: list[str]) -> dict:
    by = {b: [r["mean_moderate_3d"] for r in rows if r["backend"] == b] for b in backends}
    s = {}
    for b, v in by.items():
        if v:
            s[b] = {"n": len(v), "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else float("nan"),
                    "values": v, "train_min": statistics.fmean(r["train_seconds"] for r in rows if r["backend"] == b) / 60}
    if len(s) == 2 and all(x["n"] > 1 for x in s.values()):
        a, b = (s[k] for k in backends)
        diff = b["mean"] - a["mean"]
        se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
        from scipy import stats

        # Welch's t-test: with 3 seeds a side, "2 SE" (a normal approximation) is far too liberal
        welch = stats.ttest_ind(by[backends[1]], by[backends[0]], equal_var=False)
        s["difference"] = {"value": diff, "standard_error": se, "within_2se": abs(diff) <= 2 * se,
                           "welch_t": float(welch.statistic), "welch_p": float(welch.pvalue)}
    return s


def render(summary: dict, rows: list[dict], args, backends: list[str]) -> str:
    from clean_deploy.bench.results import markdown_table
    from clean_deploy.bench.run import machine_description

    lines = ["# Sparse conv backends: AP end to end", "",
             f"{date.today().isoformat()}, {machine_description()}. `{CONFIG}` trained {args.epochs} epochs on "
             f"{args.frames} synthetic train frames (seed {args.data_seed}), evaluated on {args.val_frames} val frames: "
             "mean moderate 3D AP_R40 (%), KITTI protocol. Train times are wall times of runs that shared the "
             "machine with other work (not timing evidence: see train_speed.md).", ""]
    lines += markdown_table(
        ["backend", "seeds", "mean moderate 3D AP (mean +- std)", "per seed", "train time (min, mean)"],
        [[b, summary[b]["n"], f"{summary[b]['mean']:.2f} +- {summary[b]['std']:.2f}",
          ", ".join(f"{v:.2f}" for v in summary[b]["values"]), f"{summary[b]['train_min']:.1f}"]
         for b in backends if b in summary])
    if "difference" in summary:
        d = summary["difference"]
        lines += ["", f"Difference ({backends[1]} - {backends[0]}): {d['value']:+.2f} AP, standard error "
                      f"{d['standard_error']:.2f}: {'within' if d['within_2se'] else 'NOT within'} two standard errors; "
                      f"Welch's t-test t = {d['welch_t']:.2f}, two-sided p = {d['welch_p']:.3f} (with this few seeds "
                      "the t distribution, not the 2-SE rule, is the test)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", nargs="+", default=["spconv", "clean_deploy"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--val-frames", type=int, default=500)
    ap.add_argument("--data-seed", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "parity")
    ap.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / "backend_parity")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backend_parity")
    args = ap.parse_args(argv)
    ensure_data(args.data, args.frames, args.val_frames, args.data_seed)
    rows = []
    for seed in args.seeds:
        for backend in args.backends:
            row = run_one(backend, seed, args)
            print(f"[backend_parity] {backend} seed {seed}: {row['mean_moderate_3d']:.2f}", flush=True)
            rows.append(row)
    summary = summarise(rows, args.backends)
    doc = {"date": date.today().isoformat(), "config": CONFIG, "epochs": args.epochs,
           "frames": {"train": args.frames, "val": args.val_frames, "seed": args.data_seed},
           "summary": summary, "runs": rows}
    tmp = args.out.parent / "backend_parity.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(args.out.parent / "backend_parity.json")
    md = render(summary, rows, args, args.backends)
    (args.out.parent / "backend_parity.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
