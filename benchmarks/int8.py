"""INT8 post-training quantisation of the deployed CLEAN student, with choices made on val only and
the result reported on the held-out test split.

    .venv/bin/python benchmarks/int8.py                    # every stage (accuracy, then latency)
    .venv/bin/python benchmarks/int8.py --stage accuracy   # no timing (can run beside other work)
    .venv/bin/python benchmarks/int8.py --stage latency    # timing only: run it on an idle machine

Protocol (benchmarks/results/int8/int8.md states it with the numbers):
  1. calibration on the first --calib-frames frames of the train split (data seed 0);
  2. calibration method (minmax / percentile / entropy) chosen by the all-int8 model's AP on the
     first --val-frames frames of the val split;
  3. per-layer sensitivity profile on the same val frames (one layer int8, the rest float32); the
     layers whose drop exceeds --threshold AP and --noise-z standard errors of that drop (jackknife
     over --folds groups of the frames) stay float32 (NVIDIA's PTQ workflow, with the noise of a
     few hundred frames' AP accounted for);
  4. float32, all-int8 and the final int8 model on the test split (--test-frames frames of data seed
     --test-seed, which no choice looked at): AP, box parity against float32;
  5. latency: `clean-deploy bench` of the float32 and final int8 models (ONNX Runtime from Python and
     the C++ sample), --repeats back-to-back runs, medians and ranges.
Stages cache their results in benchmarks/results/int8/steps/ (keyed by the source model and the
settings), so an interrupted run resumes. Writes int8.{json,md}, sensitivity.png and the final model
student.int8.onnx (+ sidecar, report).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from baselines import ensure_data  # noqa: E402

from clean_deploy.atomic import atomic_write  # noqa: E402
from clean_deploy.bench.results import markdown_table  # noqa: E402

METHODS = ("minmax", "percentile", "entropy")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class Steps:
    """JSON results of finished stages, valid while the source model and the settings are unchanged."""

    def __init__(self, folder: Path, key: dict) -> None:
        self.folder, self.key = folder, key

    def get(self, name: str, make):
        path = self.folder / f"{name}.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            if doc.get("key") == self.key:
                return doc["value"]
        value = make()
        atomic_write(path, lambda f: f.write((json.dumps({"key": self.key, "value": value}, indent=2) + "\n").encode()))
        return value


def accuracy(args, steps: Steps) -> dict:
    from clean_deploy.quantize.config import QuantizeConfig
    from clean_deploy.quantize.evaluate import box_parity, run_split
    from clean_deploy.quantize.pipeline import quantize_onnx
    from clean_deploy.quantize.sensitivity import auto_keep, sensitivity_profile
    from clean_deploy.quantize.calibrate import collect_ranges
    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.train.evaluate import mean_moderate_ap
    import onnx

    src = args.onnx
    model = onnx.load(str(src))
    side = read_sidecar(src.with_suffix(".json"))
    cfg = lambda m, keep=(), w="float32": QuantizeConfig(  # noqa: E731
        method=m, calib_frames=args.calib_frames, keep_fp32=tuple(keep), kept_weights=w)
    ranges = {}

    def ranges_of(m):
        if m not in ranges:
            ranges[m] = collect_ranges(model, side, args.data, cfg(m), args.threads)
        return ranges[m]

    def val_ap(path):
        return mean_moderate_ap(run_split(path, args.data, "val", args.val_frames, args.threads, desc="val")[1])

    work = Path(tempfile.mkdtemp(prefix="clean_deploy_int8."))
    fp32_val = steps.get("fp32_val", lambda: val_ap(src))
    methods = {}
    for m in METHODS:
        def run_method(m=m):
            q = work / f"all_{m}.onnx"
            quantize_onnx(src, q, args.data, cfg(m), args.threads, ranges=ranges_of(m))
            return val_ap(q)
        methods[m] = steps.get(f"method_{m}", run_method)
        print(f"[int8] val AP all-int8 with {m}: {methods[m]:.2f} (float32 {fp32_val:.2f})")
    best = max(METHODS, key=lambda m: methods[m])
    profile = steps.get(f"sensitivity_{best}", lambda: sensitivity_profile(
        src, args.data, "val", args.val_frames, cfg(best), ranges_of(best), work, args.threads, folds=args.folds))
    keep = auto_keep(profile, args.threshold, args.noise_z)
    print(f"[int8] method {best}; kept in float32 (val drop > {args.threshold} and > {args.noise_z} SE): "
          f"{keep or 'none'}")

    final = args.out / "student.int8.onnx"
    all_int8 = args.out / "student.int8_all.onnx"  # every layer int8 (for the latency table)
    report = quantize_onnx(src, final, args.data, cfg(best, keep), args.threads, ranges=ranges_of(best))
    report["sensitivity"] = profile
    atomic_write(final.with_suffix(".quant.json"), lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    quantize_onnx(src, all_int8, args.data, cfg(best), args.threads, ranges=ranges_of(best))
    # the final model's choice of layers, their weights stored int8 (weight-only; they compute in float32)
    final_w8 = args.out / "student.int8_w8.onnx"
    report_w8 = quantize_onnx(src, final_w8, args.data, cfg(best, keep, "int8"), args.threads, ranges=ranges_of(best))

    made: dict[str, tuple] = {}  # file sha -> (detections, AP, prediction folder): each file predicted once

    def test_run(name: str, path: Path):
        key = sha(path)
        if key not in made:
            pred = work / "test_pred" / key
            pred.mkdir(parents=True, exist_ok=True)
            made[key] = (*run_split(path, args.test_data, "val", None, args.threads, pred_dir=pred,
                                    desc=f"test {name}"), pred)
        return made[key]

    def scored(name: str, path: Path) -> dict:
        d32, _, _ = test_run("fp32", src)
        d8, a8, _ = test_run(name, path)
        return {"ap": a8, "mean_moderate_3d": mean_moderate_ap(a8),
                "parity": {str(s): box_parity(d32, d8, 0.5, s) for s in (0.1, 0.3)}}

    def test_eval():
        d32, a32, _ = test_run("fp32", src)
        out = {"fp32": {"ap": a32, "mean_moderate_3d": mean_moderate_ap(a32)}, "frames": len(d32)}
        for name, path in (("int8", final), ("int8_all_layers", all_int8)):
            out[name] = scored(name, path)
        return out

    test = steps.get(f"test_{sha(final)}", test_eval)
    test["int8_w8"] = steps.get(f"test_w8_{sha(final_w8)}", lambda: scored("int8_w8", final_w8))

    def test_difference_se():
        """Jackknife SE of the paired test difference int8 - float32 (folds of the test frames), from
        the predictions the test stage wrote (made here if that stage's result was stored before)."""
        import numpy as np

        from clean_deploy.data.kitti.reader import KittiReader
        from clean_deploy.eval.kitti_protocol import KITTI_CLASSES
        from clean_deploy.quantize.sensitivity import fold_aps, jackknife_se

        ids = KittiReader(args.test_data, "val").frame_ids
        classes = tuple(c for c in side["class_names"] if c in KITTI_CLASSES)
        folds = [fold_aps(args.test_data, "val", test_run(name, path)[2], ids, side["preprocess"]["point_cloud_range"],
                          classes, args.folds) for name, path in (("fp32", src), ("int8", final))]
        return jackknife_se(np.subtract(folds[1], folds[0]))

    test["int8_minus_fp32_se"] = steps.get(f"test_se_{sha(final)}", test_difference_se)
    return {"fp32_val": fp32_val, "methods_val": methods, "method": best, "profile": profile, "keep_fp32": keep,
            "test": test, "file_bytes": {**report["file_bytes"], "int8_all_layers": all_int8.stat().st_size,
                                         "int8_w8": report_w8["file_bytes"]["int8"]},
            "final_model": str(final.relative_to(ROOT)) if final.is_relative_to(ROOT) else str(final)}


def latency(args) -> dict:
    """``--repeats`` back-to-back runs of ``clean-deploy bench`` over the float32 source and the int8
    files. A file identical to one already in the list (the final / weight-only / all-int8 models
    coincide when the sensitivity rule keeps no layer) is timed once and its rows say so. Speed-ups
    are paired per run (float32 p50 / int8 p50 of the same run), reported as median [range]."""
    from clean_deploy.bench.run import bench

    final = args.out / "student.int8.onnx"
    if not final.is_file():
        raise SystemExit(f"{final} missing: run the accuracy stage first")
    candidates = [args.onnx, final] + [args.out / f"student.{v}.onnx" for v in ("int8_w8", "int8_all")
                                       if (args.out / f"student.{v}.onnx").is_file()]
    timed, same_as, seen = [], {}, {}
    for m in candidates:
        digest = sha(m)
        if digest in seen:
            same_as[m.stem] = seen[digest]
            continue
        seen[digest] = m.stem
        timed.append(m)
    load_before = load_average()
    runs = []
    for k in range(args.repeats):
        doc = bench([str(m) for m in timed], args.test_data, args.out / "bench", split="val", frames=args.frames,
                    threads=args.threads, cpp=True, echo=lambda s: None)
        runs.append(doc)
        print(f"[int8] latency run {k + 1}/{args.repeats} done")
    from clean_deploy.bench.results import BenchResult

    rows, per_run_p50 = {}, {}
    for r in runs[0]["results"]:
        label = r["label"]
        per = [BenchResult.from_dict(next(x for x in d["results"] if x["label"] == label)) for d in runs]
        per_run_p50[label] = [x.latency.stage("net").p50 for x in per]
        stat = lambda f: {"median": statistics.median(f(x) for x in per), "min": min(f(x) for x in per),  # noqa: E731
                          "max": max(f(x) for x in per)}
        rows[label] = {
            "net_p50": stat(lambda x: x.latency.stage("net").p50),
            "net_p90": stat(lambda x: x.latency.stage("net").p90),
            "net_p99": stat(lambda x: x.latency.stage("net").p99),
            "total_p50": stat(lambda x: x.latency.p50()),
            "peak_mem_mb": stat(lambda x: x.peak_memory_mb or 0.0),
            "weight_mb": per[0].weight_mb, "mean_moderate_3d": per[0].mean_moderate_3d}
    speedups = {}
    for backend in ("onnxruntime", "cpp"):
        k32 = f"{args.onnx.stem} [{backend}]"
        for m in timed[1:]:  # a file's copies under other names share its entry (same_file_as)
            k8 = f"{m.stem} [{backend}]"
            if k32 in per_run_p50 and k8 in per_run_p50:
                r = [a / b for a, b in zip(per_run_p50[k32], per_run_p50[k8])]
                speedups[k8] = {"per_run": r, "median": statistics.median(r), "min": min(r), "max": max(r)}
    return {"machine": runs[0]["machine"], "date": runs[0]["date"], "threads": args.threads, "frames": args.frames,
            "repeats": args.repeats, "rows": rows, "same_file_as": same_as, "speedups": speedups,
            "load_before": load_before, "fp32_stem": args.onnx.stem, "int8_stem": final.stem,
            "int8_all_stem": "student.int8_all", "int8_w8_stem": "student.int8_w8",
            "kernel": kernel_widths(args)}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def kernel_widths(args, reps: int = 40) -> dict:
    """SparseConvolution (float32) vs SparseConvolutionInt8 on one submanifold 3x3x3 layer over a real
    test frame's voxel sites, Cin = Cout = width, 1 ONNX Runtime thread, calls interleaved; medians.
    Both ops reuse the cached rulebook after the first call, so this times the convolution itself."""
    import time

    import numpy as np

    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.quantize.calibrate import calibration_inputs
    from clean_deploy.runtime import ort_ops

    side = read_sidecar(args.onnx.with_suffix(".json"))
    feed = next(calibration_inputs(side, args.test_data, "val", 1))
    idx = np.ascontiguousarray(feed["voxel_coords"])
    nx, ny, nz = side["preprocess"]["grid_size"]
    shape = (nz + 1, ny, nx)
    g = np.random.default_rng(0)
    rows = []
    for width in (8, 16, 32, 64, 128):
        w = (g.standard_normal((width, 3, 3, 3, width)) * 0.05).astype(np.float32)
        s32 = ort_ops.sparse_conv_session(ort_ops.make_sparse_conv_model(
            ort_ops.SparseConvSpec(w, None, 1, 1, 1, True, "relu", shape)), threads=1)
        m8 = ort_ops.make_sparse_conv_int8_model(g.integers(-127, 128, w.shape).astype(np.int8),
                                                 np.full(width, 0.01, np.float32), 0.05, 0.3, None,
                                                 spatial_shape=shape, padding=1, subm=True, activation="relu")
        s8 = ort_ops.sparse_conv_session(m8, threads=1)
        f32 = g.standard_normal((len(idx), width)).astype(np.float32)
        f8 = g.integers(-128, 128, (len(idx), width)).astype(np.int8)
        t32, t8 = [], []
        for _ in range(reps):
            t = time.perf_counter()
            s32.run(None, {"features": f32, "indices": idx})
            t32.append(time.perf_counter() - t)
            t = time.perf_counter()
            s8.run(None, {"features": f8, "indices": idx})
            t8.append(time.perf_counter() - t)
        a, b = statistics.median(t32[2:]) * 1e3, statistics.median(t8[2:]) * 1e3
        rows.append({"width": width, "sites": int(len(idx)), "fp32_ms": a, "int8_ms": b, "speedup": a / b})
        print(f"[int8] kernel width {width}: fp32 {a:.2f} ms, int8 {b:.2f} ms")
    return {"isa": ort_ops.int8_isa(), "reps": reps, "rows": rows}


def sensitivity_plot(profile: dict, keep: list[str], path: Path, threshold: float, z: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = profile["layers"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = [r["layer"].replace("sp_SparseConvolution_", "sparse ") if "/" not in r["layer"]
             else r["layer"].split("/")[-2] + (" (T)" if r["op"] == "ConvTranspose" else "") for r in rows]
    colors = ["tab:red" if r["layer"] in keep else ("tab:blue" if r["op"] == "SparseConvolution" else "tab:green")
              for r in rows]
    se = [r.get("drop_se") for r in rows]
    ax.bar(range(len(rows)), [r["drop"] for r in rows], color=colors,
           yerr=None if None in se else [z * e for e in se], capsize=2, error_kw={"lw": 0.8})
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"keep float32 above {threshold} AP"
               + ("" if None in se else f" and above {z} SE (error bars: {z} SE)"))
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(range(len(rows)), names, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("AP drop (float32 - one layer int8)")
    ax.set_title(f"int8 sensitivity per layer ({profile['split']}, {profile['frames']} frames, jackknife over "
                 f"{profile.get('folds')} groups; blue sparse, "
                 f"green dense, red kept float32)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(doc: dict) -> str:
    a = doc["accuracy"]
    t = a["test"]
    p = doc["protocol"]
    lines = [f"# INT8 post-training quantisation ({doc['date']})", "",
             f"Source: `{p['onnx']}` (float32). Calibration: first {p['calib_frames']} "
             f"train frames; choices on the first {p['val_frames']} val frames (data seed 0); report on "
             f"{t['frames']} test frames (data seed {p['test_seed']}), which no choice looked at.", "",
             "## Choices on val (mean moderate 3D AP)", ""]
    lines += markdown_table(["model", "val AP"], [["float32", f"{a['fp32_val']:.2f}"]]
                            + [[f"all int8, {m} calibration", f"{v:.2f}"] for m, v in a["methods_val"].items()])
    pr = a["profile"]
    se_all = f" (all int8 - float32: {pr['int8_all'] - pr['fp32']:+.2f} +- {pr['int8_all_se']:.2f} SE)" \
        if pr.get("int8_all_se") is not None else ""
    lines += ["", f"Chosen: **{a['method']}**. Sensitivity profile (one layer int8 at a time): float32 "
                  f"{pr['fp32']:.2f}, all int8 {pr['int8_all']:.2f}{se_all}; kept float32 "
                  f"(drop > {p['threshold']} AP and > {p.get('noise_z')} standard errors of the drop, jackknife over "
                  f"{p.get('folds')} interleaved groups of the val frames): "
                  f"{', '.join(f'`{k}`' for k in a['keep_fp32']) or 'none'}. ![sensitivity](sensitivity.png)", ""]
    if pr["layers"] and pr["layers"][0].get("drop_se") is not None:
        lines += markdown_table(["layer", "op", "val AP drop", "SE", "drop / SE", "kept float32"],
                                [[f"`{r['layer']}`", r["op"], f"{r['drop']:+.2f}", f"{r['drop_se']:.2f}",
                                  f"{r['drop'] / r['drop_se']:+.1f}" if r["drop_se"] > 0 else "-",
                                  "yes" if r["layer"] in a["keep_fp32"] else ""] for r in pr["layers"]])
        lines.append("")
    lines += ["## Test split", ""]
    rows = []
    for name in ("fp32", "int8", "int8_w8", "int8_all_layers"):
        if name not in t:
            continue
        r = t[name]
        cls = [r["ap"][c]["3d"]["moderate"] if c in r["ap"] else float("nan") for c in ("Car", "Pedestrian", "Cyclist")]
        par = r.get("parity", {}).get("0.3")
        size = a["file_bytes"].get(name)
        match = [f"{par['matched_share_ref']:.1%}", f"{par['abs_score_diff']['median']:.4f}"] if par else ["-", "-"]
        mb = f"{size / 2**20:.2f}" if size else "-"
        rows.append([name, f"{r['mean_moderate_3d']:.2f}", *(f"{c:.2f}" for c in cls), *match, mb])
    lines += markdown_table(["model", "mean mod 3D AP", "Car", "Ped", "Cyc", "boxes matched to float32 (score >= 0.3)",
                             "median abs score diff", "file MB"], rows)
    d = t["int8"]["mean_moderate_3d"] - t["fp32"]["mean_moderate_3d"]
    se = t.get("int8_minus_fp32_se")
    se_txt = f" +- {se:.2f} (jackknife SE over {p.get('folds')} groups of the test frames)" if se is not None else ""
    lines += ["", f"INT8 - float32 on test: **{d:+.2f} AP**{se_txt} (goal: within -1.0; CUDA-CenterPoint's PTQ drop is 0.5). "
                  f"File {a['file_bytes']['fp32'] / a['file_bytes']['int8']:.2f}x smaller (goal >= 3x)."]
    if "int8_w8" in t:
        d8 = t["int8_w8"]["mean_moderate_3d"] - t["fp32"]["mean_moderate_3d"]
        lines += ["", f"The same layer choice with the float32 layers' weights stored int8 (`--kept-weights int8`: "
                      f"weight-only, they still compute in float32; `int8_w8`): **{d8:+.2f} AP**, file "
                      f"{a['file_bytes']['fp32'] / a['file_bytes']['int8_w8']:.2f}x smaller."]
    lat = doc.get("latency")
    if lat:
        lines += ["", "## Latency", "",
                  f"{lat['date']}, {lat['machine']}; {lat['threads']} threads; {lat['frames']} test frames after "
                  f"warm-up; median [range] over {lat['repeats']} back-to-back runs of `clean-deploy bench`"
                  + (f"; load average before: {', '.join(map(str, lat['load_before']))}" if lat.get("load_before") else "")
                  + ".", ""]
        f = lambda s: f"{s['median']:.1f} [{s['min']:.1f}..{s['max']:.1f}]"  # noqa: E731
        lines += markdown_table(
            ["model [backend]", "net p50 ms", "net p90 ms", "net p99 ms", "total p50 ms", "peak mem MB", "AP (test)"],
            [[label, f(r["net_p50"]), f(r["net_p90"]), f(r["net_p99"]), f(r["total_p50"]),
              "-" if not r["peak_mem_mb"]["median"] else f(r["peak_mem_mb"]), f"{r['mean_moderate_3d']:.2f}"]
             for label, r in lat["rows"].items()])
        for stem, first in lat.get("same_file_as", {}).items():
            lines.append(f"\n`{stem}` is the same file as `{first}` (no layer kept float32): timed once, under `{first}`.")
        what = {lat["int8_stem"]: "final int8", lat.get("int8_w8_stem"): "final int8, kept layers' weights int8",
                lat.get("int8_all_stem"): "all-layers int8"}
        if "speedups" in lat:
            same = lat.get("same_file_as", {})
            for key, sp in lat["speedups"].items():
                stem, backend = key.split(" [")
                names = " = ".join(what.get(x, x) for x in [stem] + [a for a, b in same.items() if b == stem])
                lines.append(f"\nNetwork p50 speed-up, {names} vs float32 [{backend[:-1]}], paired per run: "
                             f"**{sp['median']:.2f}x** [{sp['min']:.2f}..{sp['max']:.2f}] (goal >= 1.5x).")
        else:  # results written before the paired speed-ups
            for backend in ("onnxruntime", "cpp"):
                k32 = f"{lat['fp32_stem']} [{backend}]"
                for stem in (lat["int8_stem"], lat.get("int8_w8_stem"), lat.get("int8_all_stem")):
                    k8 = f"{stem} [{backend}]"
                    if k32 in lat["rows"] and k8 in lat["rows"]:
                        ratio = lat["rows"][k32]["net_p50"]["median"] / lat["rows"][k8]["net_p50"]["median"]
                        lines.append(f"\nNetwork p50 speed-up, {what[stem]} vs float32 [{backend}]: **{ratio:.2f}x** "
                                     "(goal >= 1.5x).")
        k = lat.get("kernel")
        if k:
            lines += ["", f"Sparse conv alone (one submanifold 3x3x3 layer, Cin = Cout = width, {k['rows'][0]['sites']} "
                          f"sites of a test frame, 1 thread, median of {k['reps']} interleaved calls; int8 kernel "
                          f"`{k['isa']}`):", ""]
            lines += markdown_table(["width", "float32 ms", "int8 ms", "speed-up"],
                                    [[r["width"], f"{r['fp32_ms']:.2f}", f"{r['int8_ms']:.2f}", f"{r['speedup']:.2f}x"]
                                     for r in k["rows"]])
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the CLEAN student of the deploy benchmark (clean_0.5x seed 0 of the ablation, exported 2026-12-02 with the
    # MatMul mean VFE): a copy kept here, so that a later deploy benchmark does not change the source of these results
    ap.add_argument("--onnx", type=Path, default=ROOT / "benchmarks" / "results" / "int8" / "source" / "compressed.onnx")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "synth")
    ap.add_argument("--test-data", type=Path, default=ROOT / "benchmarks" / "data" / "synth_test")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8")
    ap.add_argument("--frames-train", type=int, default=300, help="train frames of --data (ablation.py's)")
    ap.add_argument("--val-frames-total", type=int, default=500, help="val frames of --data (ablation.py's)")
    ap.add_argument("--test-frames", type=int, default=500)
    ap.add_argument("--test-seed", type=int, default=1000)
    ap.add_argument("--calib-frames", type=int, default=32)
    ap.add_argument("--val-frames", type=int, default=250, help="val frames of the method choice and the profile")
    ap.add_argument("--threshold", type=float, default=0.5, help="keep a layer float32 above this val AP drop")
    ap.add_argument("--noise-z", type=float, default=2.0,
                    help="... and above this many standard errors of its drop")
    ap.add_argument("--folds", type=int, default=5, help="frame groups of the drops' jackknife standard errors")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=50, help="timed frames per latency run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stage", choices=["accuracy", "latency", "all"], default="all")
    args = ap.parse_args()
    if not args.onnx.is_file():
        raise SystemExit(f"{args.onnx} missing: pass --onnx (e.g. benchmarks/results/deploy/compressed.onnx)")
    ensure_data(args.data, args.frames_train, args.val_frames_total, 0)
    ensure_data(args.test_data, 0, args.test_frames, args.test_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    protocol = {"onnx": str(args.onnx.relative_to(ROOT)) if args.onnx.is_relative_to(ROOT) else str(args.onnx),
                "onnx_sha": sha(args.onnx), "calib_frames": args.calib_frames, "val_frames": args.val_frames,
                "test_frames": args.test_frames, "test_seed": args.test_seed, "threshold": args.threshold,
                "noise_z": args.noise_z, "folds": args.folds}
    steps = Steps(args.out / "steps", {k: v for k, v in protocol.items() if k != "onnx"})  # the model by content
    doc_path = args.out / "int8.json"
    doc = json.loads(doc_path.read_text()) if doc_path.is_file() else {}
    if doc.get("protocol") != protocol:
        doc = {}
    doc.update({"date": str(date.today()), "protocol": protocol})
    if args.stage in ("accuracy", "all"):
        doc["accuracy"] = accuracy(args, steps)
        sensitivity_plot(doc["accuracy"]["profile"], doc["accuracy"]["keep_fp32"], args.out / "sensitivity.png",
                         args.threshold, args.noise_z)
    if args.stage in ("latency", "all"):
        doc["latency"] = latency(args)
    if "accuracy" not in doc:
        raise SystemExit("no accuracy results yet: run --stage accuracy first")
    atomic_write(doc_path, lambda f: f.write((json.dumps(doc, indent=2) + "\n").encode()))
    md = markdown(doc)
    atomic_write(args.out / "int8.md", lambda f: f.write(md.encode()))
    print(md)


if __name__ == "__main__":
    main()
