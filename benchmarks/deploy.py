"""Teacher vs compressed student per backend (the deployment benchmark of the benchmarks issue):
export the CLEAN student to ONNX, check parity with PyTorch on the val split, then benchmark the
teacher (PyTorch eager), the plain student and the compressed student (PyTorch eager and ONNX
Runtime with our custom-op library, from Python and from the C++ sample) on the same frames and
threads, and check the project's target ratios.

    # the plain and the CLEAN student of the ablation's seed 0 (trained when missing, ~25 min on 2 cores)
    .venv/bin/python benchmarks/ablation.py --checkpoints plain:0 clean_0.5x:0
    .venv/bin/python benchmarks/deploy.py --plain PLAIN.pth --compressed CLEAN.pth

Writes benchmarks/results/deploy/{bench.json,bench.md,targets.md,accuracy_vs_latency.png,
latency_breakdown.png}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from clean_deploy.bench.results import BenchResult, markdown_table
from clean_deploy.bench.run import bench
from clean_deploy.runtime.check import check_parity
from clean_deploy.export.onnx_export import export_onnx
from clean_deploy.models.checkpoint import load_detector
from clean_deploy.train.evaluate import mean_moderate_ap


def targets(doc: dict, labels: dict[str, str]) -> list[tuple[str, float, float, str]]:
    """(target, value, threshold, unit) rows for the issue's ratios; met when value >= threshold."""
    by = {r["label"]: r for r in doc["results"]}
    t, s_t, s_o = by[labels["teacher"]], by[labels["student_torch"]], by[labels["student_onnx"]]
    t, s_t, s_o = (BenchResult.from_dict(r) for r in (t, s_t, s_o))
    lat = lambda r: r.latency.p50()  # noqa: E731
    mem = lambda r: max(r.peak_memory_mb, 1e-3)  # noqa: E731
    return [
        ("student AP - teacher AP >= 0 (mean moderate 3D)", s_o.mean_moderate_3d - t.mean_moderate_3d, 0.0, " AP"),
        (">= 5x fewer parameters", t.params / s_t.params, 5.0, "x"),
        (">= 5x lower peak inference memory (ORT student vs teacher)", mem(t) / mem(s_o), 5.0, "x"),
        (">= 4x lower latency, ONNX Runtime CPU student vs teacher", lat(t) / lat(s_o), 4.0, "x"),
        ("ONNX Runtime student >= 1.5x faster than eager PyTorch student", lat(s_t) / lat(s_o), 1.5, "x"),
    ]


def summarise(per_run: list[list[tuple[str, float, float, str]]]) -> list[dict]:
    """Median and range over repeated runs of every target (never the best run)."""
    import statistics

    out = []
    for i, (name, _, threshold, unit) in enumerate(per_run[0]):
        values = [run[i][1] for run in per_run]
        med = statistics.median(values)
        out.append({"target": name, "median": med, "min": min(values), "max": max(values), "values": values,
                    "threshold": threshold, "unit": unit, "met": med >= threshold})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("benchmarks/data/synth"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/deploy"))
    ap.add_argument("--teacher", type=Path, default=Path("benchmarks/checkpoints/teacher_voxel_rcnn_fast.pth"))
    ap.add_argument("--plain", type=Path, required=True,
                    help="the plain student (benchmarks/ablation.py --checkpoints plain:0 prints its path)")
    ap.add_argument("--compressed", type=Path, required=True,
                    help="the CLEAN student (benchmarks/ablation.py --checkpoints clean_0.5x:0 prints its path)")
    ap.add_argument("--repeats", type=int, default=5, help="benchmark runs; the table reports their median and range")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    teacher, plain, compressed = args.teacher, args.plain, args.compressed
    for p in (teacher, plain, compressed):
        if not p.is_file():
            raise SystemExit(f"{p} missing: see `benchmarks/deploy.py --help` for how each checkpoint is made")
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "compressed.onnx"
    model, _ = load_detector(compressed)
    export_onnx(model, onnx_path, source=compressed)
    rep = check_parity(model, onnx_path, args.data, "val", threads=args.threads,
                       pred_dirs=(args.out / "pred_torch", args.out / "pred_onnx"))
    parity = {"summary": rep.summary(), "ok": rep.ok(), "ap_torch": mean_moderate_ap(rep.ap_torch),
              "ap_onnx": mean_moderate_ap(rep.ap_onnx)}
    print("parity:", rep.summary(), f"AP torch {parity['ap_torch']:.2f} / onnx {parity['ap_onnx']:.2f}")
    # bench labels its rows by file stem and backend
    labels = {"teacher": f"{teacher.stem} [torch]", "student_torch": f"{compressed.stem} [torch]",
              "student_onnx": f"{onnx_path.stem} [onnxruntime]"}
    runs = []
    for k in range(args.repeats):  # the same machine, back to back: the spread is the machine's noise
        doc = bench([str(teacher), str(plain), str(compressed), str(onnx_path)], args.data, args.out,
                    frames=args.frames, threads=args.threads, cpp=True)
        runs.append(targets(doc, labels))
        print(f"run {k + 1}/{args.repeats}: " + ", ".join(f"{v:.2f}" for _, v, _, _ in runs[-1]))
    doc["parity"] = parity
    doc["targets"] = summarise(runs)
    (args.out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    fmt = lambda t, v: f"{v:+.2f}{t['unit']}" if t["unit"] == " AP" else f"{v:.2f}{t['unit']}"  # noqa: E731
    md = [f"Median over {args.repeats} back-to-back runs (range in brackets; bench.json holds every run); the other "
          "tables of bench.json are its last run.", ""]
    md += markdown_table(["target", "median [range]", "met (median)"],
                         [[t["target"], f"{fmt(t, t['median'])} [{fmt(t, t['min'])} .. {fmt(t, t['max'])}]",
                           "yes" if t["met"] else "no"] for t in doc["targets"]])
    md += ["", f"ONNX Runtime vs PyTorch parity on the val split: {rep.summary()}; mean moderate 3D AP "
                f"{parity['ap_torch']:.2f} (PyTorch) vs {parity['ap_onnx']:.2f} (ONNX Runtime)."]
    (args.out / "targets.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
