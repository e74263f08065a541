"""CPU rulebooks of the strided (regular) sparse convs: the bitmap method against the sorting one, per
layer and in the deployed student's network latency (float32 and int8, ONNX Runtime).

    .venv/bin/python benchmarks/rulebook_cpu.py [--frames 50] [--repeats 7]

The library picks the bitmap method where the output grid has at most 256 cells per input (the
table lists each layer's ratio; above it the "bitmap" column is the sorting method too);
``CLEAN_DEPLOY_REGULAR_RULEBOOK=sort`` forces the sorting one (csrc/cpu/rulebook.h describes both).
The C interface returns counts only, so the script checks that both give the same number of output
sites and of pairs per offset on every layer and frame (the C++ tests compare whole rulebooks).

1. Per strided layer of the model's sparse backbone, on the sites that layer sees in each test frame:
   one serial rulebook build (the C interface, no ONNX Runtime), median of --reps, mean over frames.
2. Network latency (voxels in, boxes out, --threads ONNX Runtime threads; the clouds cropped to the
   camera's field of view, as `clean-deploy bench` runs them) of the float32 model and
   its int8 version: median over the frames per run, the methods' order flipped from run to run,
   then the median and range over --repeats runs.
Run it on an idle machine. Writes benchmarks/results/rulebook_cpu.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from baselines import ensure_data  # noqa: E402

from clean_deploy.atomic import atomic_write  # noqa: E402
from clean_deploy.bench.results import markdown_table  # noqa: E402
from clean_deploy.bench.run import machine_description  # noqa: E402

ENV = "CLEAN_DEPLOY_REGULAR_RULEBOOK"
METHODS = {"bitmap": "auto", "sort": "sort"}  # method -> value of ENV ("auto": the library's choice)


def sparse_layers(onnx_path: Path) -> list[dict]:
    """The model's SparseConvolution / SparseConvolutionInt8 nodes in graph order: name and geometry."""
    import onnx

    model = onnx.load(str(onnx_path))
    layers = []
    for node in model.graph.node:
        if node.op_type.startswith("SparseConvolution"):
            a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
            layers.append({"name": node.name, "kernel": list(a["kernel_size"]), "stride": list(a["stride"]),
                           "padding": list(a["padding"]), "dilation": list(a["dilation"]),
                           "spatial_shape": list(a["spatial_shape"]), "subm": bool(a["subm"])})
    return layers


def layer_sites(layers: list[dict], coords: np.ndarray) -> list[np.ndarray]:
    """The active sites each layer sees: the voxel coordinates, then each layer's output sites."""
    from clean_deploy.runtime.ort_ops import run_sparse_conv

    sites, idx = [], coords
    for layer in layers:
        sites.append(idx)
        w = np.zeros((1, *layer["kernel"], 1), np.float32)
        _, idx = run_sparse_conv(np.zeros((len(idx), 1), np.float32), idx, w, spatial_shape=layer["spatial_shape"],
                                 stride=layer["stride"], padding=layer["padding"], dilation=layer["dilation"],
                                 subm=layer["subm"])
    return sites


def time_builds(layers, frames_sites, reps: int) -> list[dict]:
    from clean_deploy.runtime.ort_ops import rulebook_pair_counts

    rows = []
    for li, layer in enumerate(layers):
        if layer["subm"]:
            continue
        ms = {m: [] for m in METHODS}
        n_in, n_out = [], []
        for sites in frames_sites:
            idx = sites[li]
            kw = dict(spatial_shape=layer["spatial_shape"], stride=layer["stride"], padding=layer["padding"],
                      dilation=layer["dilation"], subm=False)
            results = {}
            for method, env in METHODS.items():
                os.environ[ENV] = env
                t = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    results[method] = rulebook_pair_counts(idx, layer["kernel"], **kw)
                    t.append((time.perf_counter() - t0) * 1e3)
                ms[method].append(statistics.median(t))
            (ca, na), (cb, nb) = results["bitmap"], results["sort"]
            if na != nb or not np.array_equal(ca, cb):
                raise SystemExit(f"{layer['name']}: the two methods disagree ({na} vs {nb} output sites)")
            n_in.append(len(idx))
            n_out.append(na)
        out_cells = float(np.prod([(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in
                                   zip(layer["spatial_shape"], layer["padding"], layer["dilation"], layer["kernel"],
                                       layer["stride"])]))
        rows.append({"layer": layer["name"], "kernel": layer["kernel"], "stride": layer["stride"],
                     "n_in": float(np.mean(n_in)), "n_out": float(np.mean(n_out)),
                     "out_cells_per_input": out_cells / float(np.mean(n_in)),
                     **{f"{m}_ms": float(np.mean(v)) for m, v in ms.items()}})
    os.environ.pop(ENV, None)
    return rows


def time_networks(models: dict[str, Path], feeds: list[dict], repeats: int, threads: int) -> dict:
    """Per model and method, the median latency over the frames of each run. Each run times every
    frame with one method, then with the other (the order flips from run to run): a frame run twice
    in a row would find its submanifold rulebooks in the ops' cache the second time."""
    from clean_deploy.runtime.ort_session import OrtSession

    sessions = {k: OrtSession(p, threads=threads, strict_max_voxels=False) for k, p in models.items()}
    p50 = {k: {m: [] for m in METHODS} for k in models}
    for rep in range(repeats):
        for key, sess in sessions.items():
            for method in (list(METHODS) if rep % 2 == 0 else list(METHODS)[::-1]):
                os.environ[ENV] = METHODS[method]
                for f in feeds[:3]:  # warm-up
                    sess.run_voxels(*f)
                t = []
                for f in feeds:
                    t0 = time.perf_counter()
                    sess.run_voxels(*f)
                    t.append((time.perf_counter() - t0) * 1e3)
                p50[key][method].append(statistics.median(t))
    os.environ.pop(ENV, None)
    return p50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", type=Path, default=ROOT / "benchmarks" / "results" / "int8" / "source" / "compressed.onnx")
    ap.add_argument("--int8", type=Path, default=ROOT / "benchmarks" / "results" / "int8" / "student.int8.onnx")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "synth_test",
                    help="test split (val frames of data seed --seed), as benchmarks/int8.py uses")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--test-frames", type=int, default=500, help="frames of --data (generated if missing)")
    ap.add_argument("--frames", type=int, default=50, help="frames timed")
    ap.add_argument("--reps", type=int, default=7, help="builds per layer, frame and method")
    ap.add_argument("--repeats", type=int, default=7, help="network timing runs per model and method")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rulebook_cpu")
    args = ap.parse_args()

    torch.set_num_threads(1)  # torch only voxelises here; ONNX Runtime gets the cores
    ensure_data(args.data, 0, args.test_frames, args.seed)
    from clean_deploy.bench.model_info import load_frames
    from clean_deploy.runtime.ort_session import OrtSession

    # the clouds as `clean-deploy bench` feeds them: cropped to the camera's field of view
    pre = OrtSession(args.onnx, threads=1, strict_max_voxels=False).pre
    feeds = []
    for points, calib in load_frames(args.data, "val", args.frames):
        b = pre(points, calib)
        feeds.append((b["voxels"].numpy(), b["voxel_num_points"].numpy(), b["voxel_coords"].numpy()))
    layers = sparse_layers(args.onnx)
    frames_sites = [layer_sites(layers, f[2].astype(np.int32)) for f in feeds]
    load_before = os.getloadavg()
    builds = time_builds(layers, frames_sites, args.reps)
    nets = time_networks({"float32": args.onnx, "int8": args.int8}, feeds, args.repeats, args.threads)
    load_after = os.getloadavg()

    net_rows = []
    for key, v in nets.items():
        med = {m: statistics.median(v[m]) for m in METHODS}
        net_rows.append({"model": key, **{f"{m}_p50_ms": med[m] for m in METHODS},
                         **{f"{m}_range_ms": [min(v[m]), max(v[m])] for m in METHODS},
                         "saved_ms": med["sort"] - med["bitmap"]})
    int8_ratio = {m: statistics.median(nets["float32"][m]) / statistics.median(nets["int8"][m]) for m in METHODS}
    doc = {"date": date.today().isoformat(), "machine": machine_description(), "threads": args.threads,
           "load_average_1min_before_after": [load_before[0], load_after[0]], "onnx": str(args.onnx.relative_to(ROOT))
           if args.onnx.is_relative_to(ROOT) else str(args.onnx), "frames": len(feeds), "reps": args.reps,
           "repeats": args.repeats, "builds": builds, "networks": net_rows, "int8_speedup": int8_ratio}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out.with_suffix(".json"), lambda f: f.write((json.dumps(doc, indent=2) + "\n").encode()))

    total = {m: sum(r[f"{m}_ms"] for r in builds) for m in METHODS}
    above = [r["layer"] for r in builds if r["out_cells_per_input"] > 256]
    md = [f"# Rulebooks of the strided sparse convs: bitmap vs sorting ({doc['date']})", "",
          f"{doc['machine']}; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after. "
          f"Model `{doc['onnx']}` and its int8 version; {len(feeds)} test frames (data seed {args.seed}). "
          "Both methods gave the same number of output sites and of pairs per kernel offset on every layer and "
          "frame. The library takes the bitmap where the output grid has at most 256 cells per input ("
          + (f"not on {', '.join(above)}: the sorting method in both columns there" if above else "here: every layer")
          + ").", "",
          f"## One serial build per strided layer (ms; median of {args.reps}, mean over frames; through the C "
          "interface, which allocates fresh buffers per build where the ONNX Runtime op reuses them)", "",
          *markdown_table(["layer", "kernel / stride", "sites in", "sites out", "output cells per input", "sorting",
                          "bitmap", "speed-up"],
                         [[r["layer"], f"{r['kernel']} / {r['stride']}", f"{r['n_in']:.0f}", f"{r['n_out']:.0f}",
                           f"{r['out_cells_per_input']:.1f}",
                           f"{r['sort_ms']:.3f}", f"{r['bitmap_ms']:.3f}", f"{r['sort_ms'] / r['bitmap_ms']:.2f}x"]
                          for r in builds]
                         + [["**all**", "", "", "", "", f"{total['sort']:.3f}", f"{total['bitmap']:.3f}",
                             f"{total['sort'] / total['bitmap']:.2f}x"]]), "",
          f"## Network latency ({args.threads} ONNX Runtime threads; median over frames per run, then median "
          f"[range] of {args.repeats} runs, the methods' order flipped from run to run)", "",
          *markdown_table(["model", "sorting p50 ms", "bitmap p50 ms", "saved ms"],
                         [[r["model"], f"{r['sort_p50_ms']:.2f} [{r['sort_range_ms'][0]:.2f}..{r['sort_range_ms'][1]:.2f}]",
                           f"{r['bitmap_p50_ms']:.2f} [{r['bitmap_range_ms'][0]:.2f}..{r['bitmap_range_ms'][1]:.2f}]",
                           f"{r['saved_ms']:.2f}"] for r in net_rows]), "",
          f"int8 over float32 at p50: {int8_ratio['sort']:.2f}x with sorting, {int8_ratio['bitmap']:.2f}x with the "
          "bitmap.", ""]
    atomic_write(args.out.with_suffix(".md"), lambda f: f.write("\n".join(md).encode()))
    print("\n".join(md))


if __name__ == "__main__":
    main()
