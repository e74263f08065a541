"""Baseline table: train (or reuse) the two-stage teacher and the one-stage students on the
synthetic benchmark, then measure 3D AP, parameters, FLOPs, CPU latency and peak memory.

    .venv/bin/python benchmarks/baselines.py            # everything (about 1.5 h on 2 CPU cores)
    .venv/bin/python benchmarks/baselines.py --only second   # one model

Writes ``benchmarks/results/baselines.json`` and ``benchmarks/results/baselines.md``. Trained
models are kept in ``--runs`` and reused on re-runs (delete a run dir to retrain it).
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from clean_deploy.atomic import atomic_write
from clean_deploy.bench.results import Latency, markdown_table
from clean_deploy.bench.run import BenchJob, machine_description, run_job
from clean_deploy.config import TrainConfig
from clean_deploy.models.zoo import get_config
from clean_deploy.models.checkpoint import load_checkpoint
from clean_deploy.train.loop import train

#: (key, detector config, role)
#: the students carry the IoU-quality branch (one 1x1 conv; the plain post-processing ignores it)
#: so that the CLEAN ablation starts from exactly these models
MODELS = [
    ("teacher", "voxel_rcnn_fast", "teacher (two-stage)"),
    ("second", "second_fast@0.5x+iou", "student"),
    ("centerpoint", "centerpoint_fast@0.5x+iou", "student"),
    ("pointpillars", "pointpillars_fast@0.5x+iou", "student"),
]
CLASSES = ("Car", "Pedestrian", "Cyclist")


def ensure_data(root: Path, frames: int, val_frames: int, seed: int) -> Path:
    from clean_deploy.data.synth import generate_dataset

    meta = root / "synth_meta.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        if m.get("frames") == {"train": frames, "val": val_frames} and m.get("seed") == seed:
            return root
    generate_dataset(root, frames, val_frames, seed=seed, workers=2)
    return root


def run_model(key: str, cfg_name: str, args) -> dict:
    run_dir = args.runs / key
    ckpt = run_dir / "model.pth"
    if not ckpt.is_file():
        epochs = args.teacher_epochs if key == "teacher" else args.student_epochs
        tcfg = TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, num_workers=2, seed=0)
        train(get_config(cfg_name), args.data, run_dir, tcfg, resume=True, meta={"config_name": cfg_name})
    ck = load_checkpoint(ckpt)
    # latency, peak memory, params/FLOPs and AP in a fresh subprocess per model (the worker of
    # `clean-deploy bench`), so one model's allocations do not hide the next one's peak memory
    res = run_job(BenchJob(str(ckpt), "torch"), args.data, "val", args.latency_frames, 3, args.threads,
                  args.out / "baselines_jobs")
    return {"key": key, "config": cfg_name, "date": str(date.today()), "machine": machine_description(),
            "train_seconds": ck["meta"].get("train_seconds"),
            "epochs": ck["meta"].get("epochs"),
            # the training log's sparse-conv backend; none for a model without a sparse 3D backbone
            "sparse_backend": ck["meta"].get("sparse_backend") if get_config(cfg_name).backbone3d is not None else None, "ap": res["ap"], "mean_moderate_3d": res["mean_moderate_3d"], "memory": res["memory"],
            **{k: res[k] for k in ("params", "gmacs", "gflops", "weight_mb") if k in res}, "latency": res["latency"]}


def markdown(rows: list[dict], header: str) -> str:
    table = []
    for r in rows:
        aps = ["/".join(f"{r['ap'][c]['3d'][d]:.1f}" for d in ("easy", "moderate", "hard")) for c in CLASSES]
        st = Latency.from_dict(r["latency"])
        lat = f"{st.p50():.0f} ({st.p50('pre'):.0f}/{st.p50('net'):.0f}/{st.p50('post'):.0f})"
        tmin = f"{r['train_seconds'] / 60:.0f}" if r.get("train_seconds") else "-"
        if r.get("sparse_backend"):
            tmin += f" ({r['sparse_backend']})"
        table.append([r["key"], r.get("date", "-"), f"`{r['config']}`", *aps, f"{r['mean_moderate_3d']:.2f}", f"{r['params'] / 1e6:.2f}",
                      f"{r['gmacs']:.2f}", lat, f"{r['memory']['peak_inference_mb']:.0f}", tmin])
    lines = [header, ""] + markdown_table(
        ["model", "measured", "config", *(f"{c} 3D e/m/h" for c in CLASSES), "mean mod 3D", "params (M)", "GMACs",
         "CPU latency p50 ms (pre/net/post)", "peak mem (MB)", "train (min) (sparse conv)"], table)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("benchmarks/data/synth"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--val-frames", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, default=Path("benchmarks/runs"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--teacher-epochs", type=int, default=12)
    ap.add_argument("--student-epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--latency-frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2, help="torch/ORT threads of the latency measurement")
    ap.add_argument("--only", nargs="*", help="subset of model keys")
    ap.add_argument("--report", action="store_true", help="only rewrite the table from baselines.json")
    args = ap.parse_args()
    unknown = sorted(set(args.only or ()) - {k for k, _, _ in MODELS})
    if unknown:
        raise SystemExit(f"--only: unknown model key(s) {unknown}; expected some of {[k for k, _, _ in MODELS]}")
    ensure_data(args.data, args.frames, args.val_frames, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    out_json = args.out / "baselines.json"
    old = json.loads(out_json.read_text()) if out_json.is_file() else {"models": {}}
    results = old["models"]
    for r in results.values():  # records of files written before rows carried their own date and machine
        r.setdefault("date", old.get("date"))
        r.setdefault("machine", old.get("machine"))
    if args.report:
        if not results:
            raise SystemExit(f"--report: {out_json} has no models (run the benchmark first)")
        doc = json.loads(out_json.read_text())
        for r in results.values():  # records written before the backend column knew sparse-free models
            if get_config(r["config"]).backbone3d is None:
                r["sparse_backend"] = None
        args.threads = doc.get("threads", args.threads)
        write_results(results, args, doc.get("wall_seconds", 0.0), doc.get("date"))
        return
    t0 = time.time()
    for key, cfg_name, _ in MODELS:
        if args.only and key not in args.only:
            continue
        results[key] = run_model(key, cfg_name, args)
        print(f"{key}: mean moderate 3D AP {results[key]['mean_moderate_3d']:.2f}")
        write_results(results, args, time.time() - t0)  # after each model: an interruption loses nothing
    print(markdown([results[k] for k, _, _ in MODELS if k in results], "# Baselines"))


def write_results(results: dict, args, wall_seconds: float, day: str | None = None) -> None:
    doc = {"date": day or str(date.today()), "machine": machine_description(), "threads": args.threads, "data": str(args.data),
           "frames": {"train": args.frames, "val": args.val_frames}, "models": results,
           "wall_seconds": wall_seconds}
    atomic_write(args.out / "baselines.json", lambda f: f.write((json.dumps(doc, indent=2) + "\n").encode()))
    rows = [results[k] for k, _, _ in MODELS if k in results]
    machines = sorted({r.get("machine") or doc["machine"] for r in rows})
    dates = sorted({r.get("date") or doc["date"] for r in rows})
    where = f"{dates[0]}, {machines[0]}" if len(machines) == 1 and len(dates) == 1 else (
        f"Rows measured on their own dates (column `measured`) on {'; '.join(machines)}: machines of one class, "
        f"not one virtual machine, so times of different dates compare machines as well as code")
    header = (f"# Baselines on the synthetic benchmark ({args.frames} train / {args.val_frames} val frames)\n\n"
              f"{where}. AP_R40 (%), KITTI protocol, GT outside the detector range "
              f"ignored. Latency: PyTorch eager, CPU, batch 1, {args.threads} threads, {args.latency_frames} val frames after 3 warm-up, one subprocess per model; peak mem = weights + peak RSS growth while running 10 frames (freed pages returned to the OS). "
              f"Train: {args.frames} frames, batch {args.batch_size}, 2 data workers, the sparse-conv backend of the training log in brackets (none: no sparse 3D backbone).")
    md = markdown(rows, header)
    atomic_write(args.out / "baselines.md", lambda f: f.write(md.encode()))


if __name__ == "__main__":
    main()
