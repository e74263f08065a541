"""CPU sparse convolution: clean_deploy::SparseConvolution (our C++ kernels, through ONNX Runtime
with 1 and 2 intra-op threads) against spconv 2.3.8's CPU path (one thread: with more it races,
see clean_deploy/models/sparse.py) on SECOND's VoxelBackBone8x layer stack (BN folded into bias,
ReLU fused) over synthetic KITTI-like frames (front 90-degree wedge, 41x1600x1408 grid, 17-20k
voxels). spconv runs each layer as SECOND does: conv without bias, BatchNorm1d (eval), ReLU.

    .venv/bin/python benchmarks/sparse_conv_cpu.py [--frames 2] [--reps 7]

Prints a per-layer and a whole-stack table and writes ``benchmarks/results/sparse_conv_cpu.json``.
Per layer, both sides build their rulebook from scratch. For the whole stack, spconv shares the
submanifold rulebook of a stage between its layers (``indice_key``, as OpenPCDet's SECOND does)
while every ONNX node builds its own, so the stack rows favour spconv a little.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from clean_deploy.data.synth.frame import generate_frame
from clean_deploy.data.voxelize import Voxelizer
from clean_deploy.models.sparse import SparseBlock, spconv, use_sparse_backend
from clean_deploy.runtime.ort_ops import SparseConvSpec, gemm_isa, make_sparse_conv_model, sparse_conv_session

ROOT = Path(__file__).resolve().parent
VOXEL_SIZE = (0.05, 0.05, 0.1)
PC_RANGE = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
SPATIAL_SHAPE = [41, 1600, 1408]  # z, y, x (OpenPCDet adds one z slice)
IN_CHANNELS = 4

#: VoxelBackBone8x: (name, cin, cout, kernel, stride, padding, subm, indice_key)
LAYERS = [
    ("conv_input", 4, 16, 3, 1, 1, True, "subm1"),
    ("conv1", 16, 16, 3, 1, 1, True, "subm1"),
    ("conv2.0", 16, 32, 3, 2, 1, False, "spconv2"),
    ("conv2.1", 32, 32, 3, 1, 1, True, "subm2"),
    ("conv2.2", 32, 32, 3, 1, 1, True, "subm2"),
    ("conv3.0", 32, 64, 3, 2, 1, False, "spconv3"),
    ("conv3.1", 64, 64, 3, 1, 1, True, "subm3"),
    ("conv3.2", 64, 64, 3, 1, 1, True, "subm3"),
    ("conv4.0", 64, 64, 3, 2, (0, 1, 1), False, "spconv4"),
    ("conv4.1", 64, 64, 3, 1, 1, True, "subm4"),
    ("conv4.2", 64, 64, 3, 1, 1, True, "subm4"),
    ("conv_out", 64, 128, (3, 1, 1), (2, 1, 1), 0, False, "spconv_down2"),
]


def _voxel_means_numpy(vox: Voxelizer, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxelizer's rule in numpy (voxels in order of their first point, each the mean of its first
    ``max_points_per_voxel`` points, at most ``max_voxels``): where spconv is not installed."""
    zyx, inside = vox.point_voxel_coords(pts)
    pts, zyx = pts[inside], zyx[inside]
    nz, ny, nx = (int(v) for v in vox.grid_size[::-1])
    key = (zyx[:, 0] * ny + zyx[:, 1]) * nx + zyx[:, 2]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    rank_of = np.empty(len(first), np.int64)
    rank_of[np.argsort(first, kind="stable")] = np.arange(len(first))
    vid = rank_of[inv]  # voxel of each point, numbered by first appearance
    order = np.argsort(vid, kind="stable")  # points grouped by voxel, in point order
    starts = np.searchsorted(vid[order], np.arange(len(first)))
    slot = np.arange(len(order)) - starts[vid[order]]
    keep = order[slot < vox.max_points_per_voxel]
    keep = keep[vid[keep] < vox.max_voxels]
    n = min(len(first), vox.max_voxels)
    sums = np.zeros((n, pts.shape[1]), np.float64)
    np.add.at(sums, vid[keep], pts[keep])
    num = np.bincount(vid[keep], minlength=n)
    coords = np.zeros((n, 3), np.int64)
    coords[vid[keep]] = zyx[keep]
    return (sums / np.maximum(num, 1)[:, None]).astype(np.float32), coords


def load_frame(index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(features [V,4] float32 = mean of the voxel's points, indices [V,4] int32 (b,z,y,x))."""
    fr = generate_frame(seed, index)
    pts = fr.points[np.abs(fr.points[:, 1]) < fr.points[:, 0]]  # front 90 degrees
    vox = Voxelizer(VOXEL_SIZE, PC_RANGE, 5, 40000)
    if spconv is None:
        feats, coords = _voxel_means_numpy(vox, pts)
    else:
        voxels, coords, num = vox(pts)
        feats = voxels.sum(1) / np.maximum(num, 1)[:, None]
    idx = np.concatenate([np.zeros((len(coords), 1), np.int32), coords.astype(np.int32)], 1)
    return np.ascontiguousarray(feats, np.float32), idx


class _ConvParams(torch.nn.Module):
    """A sparse conv's parameters in spconv's layout [Cout, kD, kH, kW, Cin], no forward: what
    :func:`specs` reads, where spconv is not installed (e.g. a GPU machine without its wheels)."""

    def __init__(self, cin: int, cout: int, k, s, p) -> None:
        super().__init__()
        t = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)  # noqa: E731
        self.weight = torch.nn.Parameter(torch.empty(cout, *t(k), cin))
        self.stride, self.padding, self.dilation = t(s), t(p), (1, 1, 1)


def build_spconv(seed: int = 0) -> list[torch.nn.Module]:
    """conv (no bias) + BatchNorm1d (eval, random statistics) + ReLU per layer, as in SECOND.

    Without spconv the convs are parameter holders (:class:`_ConvParams`: same layout and weight
    distribution, other random draws): enough for :func:`specs`, not for the spconv columns."""
    torch.manual_seed(seed)
    mods = []
    for name, cin, cout, k, s, p, subm, key in LAYERS:
        if spconv is None:
            conv = _ConvParams(cin, cout, k, s, p)
        else:
            cls = spconv.SubMConv3d if subm else spconv.SparseConv3d
            conv = cls(cin, cout, k, stride=s, padding=p, bias=False, indice_key=key)
        bn = torch.nn.BatchNorm1d(cout, eps=1e-3)
        with torch.no_grad():
            conv.weight.normal_(0, (2.0 / conv.weight[0].numel()) ** 0.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        seq = torch.nn.Sequential if spconv is None else spconv.SparseSequential
        mods.append(seq(conv, bn, torch.nn.ReLU()).eval())
    return mods


def specs(mods: list[torch.nn.Module]) -> list[SparseConvSpec]:
    """The same layers as SparseConvolution specs, BatchNorm folded into weight and bias."""
    out = []
    shape = SPATIAL_SHAPE
    for (name, cin, cout, k, s, p, subm, key), m in zip(LAYERS, mods):
        conv, bn = m[0], m[1]
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        weight = (conv.weight.detach() * scale[:, None, None, None, None]).numpy()
        bias = (bn.bias - bn.running_mean * scale).detach().numpy()
        spec = SparseConvSpec(weight, bias, conv.stride, conv.padding, conv.dilation, subm, "relu", shape,
                              name=name.replace(".", "_"))
        shape = spec.out_spatial_shape(shape)
        out.append(spec)
    return out


_best: dict[str, list[float]] = {}


def timed(fn, reps: int, key: str | None = None) -> tuple[float, object]:
    """Median ms over reps (after a warm-up); the best time is kept in _best[key]."""
    result = fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    if key:
        _best.setdefault(key, []).append(min(times) * 1e3)
    return statistics.median(times) * 1e3, result


def sort_rows(feats: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort(idx.T[::-1])
    return feats[order], idx[order]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "sparse_conv_cpu.json")
    args = ap.parse_args()

    mods = build_spconv()
    layer_specs = specs(mods)
    stack_sessions = {t: sparse_conv_session(make_sparse_conv_model(layer_specs), t) for t in args.threads}
    layer_sessions = {t: [sparse_conv_session(make_sparse_conv_model(s), t) for s in layer_specs] for t in args.threads}

    per_layer = {name: {"spconv_1t": [], **{f"ours_{t}t": [] for t in args.threads}} for name, *_ in LAYERS}
    layer_info = {}
    stack = {"spconv_1t": [], **{f"ours_{t}t": [] for t in args.threads}}
    frames = []
    max_err = 0.0
    for fi in range(args.frames):
        feats, idx = load_frame(fi)
        frames.append(int(len(idx)))
        print(f"frame {fi}: {len(idx)} voxels")
        # ---- per layer: every layer alone on the input spconv gives it, rulebook built each time
        x_f, x_i = torch.from_numpy(feats), torch.from_numpy(idx)
        shape = SPATIAL_SHAPE
        with torch.no_grad(), use_sparse_backend("spconv"), SparseBlock("cpu"):
            for li, ((name, cin, cout, *_), m) in enumerate(zip(LAYERS, mods)):
                def run_spconv(m=m, f=x_f, i=x_i, s=shape):
                    return m(spconv.SparseConvTensor(f, i, s, 1))  # fresh tensor: no cached rulebook
                ms, y = timed(run_spconv, args.reps)
                per_layer[name]["spconv_1t"].append(ms)
                feed = {"features": x_f.numpy(), "indices": x_i.numpy()}
                for t in args.threads:
                    sess = layer_sessions[t][li]
                    ms_t, (of, oi) = timed(lambda s=sess: s.run(None, feed), args.reps)
                    per_layer[name][f"ours_{t}t"].append(ms_t)
                ref_f, ref_i = sort_rows(y.features.numpy(), y.indices.numpy())
                of, oi = sort_rows(of, oi)
                assert np.array_equal(ref_i, oi), f"{name}: output sites differ from spconv"
                max_err = max(max_err, float(np.abs(ref_f - of).max()) if len(of) else 0.0)
                layer_info.setdefault(name, []).append({"n_in": int(len(x_i)), "n_out": int(len(oi))})
                x_f, x_i, shape = y.features, y.indices, y.spatial_shape
        # ---- whole stack
        def run_spconv_stack():
            x = spconv.SparseConvTensor(torch.from_numpy(feats), torch.from_numpy(idx), SPATIAL_SHAPE, 1)
            for m in mods:
                x = m(x)
            return x
        with torch.no_grad(), use_sparse_backend("spconv"), SparseBlock("cpu"):
            ms, _ = timed(run_spconv_stack, args.reps, "spconv_1t")
        stack["spconv_1t"].append(ms)
        for t in args.threads:
            ms, _ = timed(lambda s=stack_sessions[t]: s.run(None, {"features": feats, "indices": idx}), args.reps,
                          f"ours_{t}t")
            stack[f"ours_{t}t"].append(ms)

    cols = ["spconv_1t"] + [f"ours_{t}t" for t in args.threads]
    mean = lambda v: float(np.mean(v))  # noqa: E731
    print(f"\nper layer (ms, median of {args.reps}, mean over {args.frames} frames; rulebook included)")
    head = f"{'layer':<11} {'cin>cout':>8} {'n_in':>6} {'n_out':>6} " + " ".join(f"{c:>10}" for c in cols)
    head += " " + " ".join(f"{'x' + c[5:]:>7}" for c in cols[1:])
    print(head)
    rows = []
    for name, cin, cout, *_ in LAYERS:
        v = {c: mean(per_layer[name][c]) for c in cols}
        n_in = int(np.mean([d["n_in"] for d in layer_info[name]]))
        n_out = int(np.mean([d["n_out"] for d in layer_info[name]]))
        line = f"{name:<11} {f'{cin}>{cout}':>8} {n_in:>6} {n_out:>6} " + " ".join(f"{v[c]:>10.2f}" for c in cols)
        line += " " + " ".join(f"{v['spconv_1t'] / v[c]:>6.2f}x" for c in cols[1:])
        print(line)
        rows.append({"layer": name, "cin": cin, "cout": cout, "n_in": n_in, "n_out": n_out, **v})
    total = {c: sum(r[c] for r in rows) for c in cols}
    print(f"{'sum':<11} {'':>8} {'':>6} {'':>6} " + " ".join(f"{total[c]:>10.2f}" for c in cols)
          + " " + " ".join(f"{total['spconv_1t'] / total[c]:>6.2f}x" for c in cols[1:]))
    st = {c: mean(stack[c]) for c in cols}
    best = {c: mean(_best[c]) for c in cols}
    print(f"{'stack':<11} {'':>8} {'':>6} {'':>6} " + " ".join(f"{st[c]:>10.2f}" for c in cols)
          + " " + " ".join(f"{st['spconv_1t'] / st[c]:>6.2f}x" for c in cols[1:]))
    print(f"{'stack best':<11} {'':>8} {'':>6} {'':>6} " + " ".join(f"{best[c]:>10.2f}" for c in cols)
          + " " + " ".join(f"{best['spconv_1t'] / best[c]:>6.2f}x" for c in cols[1:]))
    print(f"max |ours - spconv| over all layers: {max_err:.2e}; SGEMM kernel: {gemm_isa()}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (2-thread numbers need an idle core)")

    import onnxruntime

    result = {
        "date": date.today().isoformat(),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "load_average_1_5_15": list(os.getloadavg()),
                    "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
                    "spconv": "2.3.8, one torch thread"},
        "gemm_isa": gemm_isa(),
        "grid": SPATIAL_SHAPE, "voxel_size": VOXEL_SIZE, "frames_voxels": frames, "reps": args.reps,
        "per_layer_ms": rows, "per_layer_sum_ms": total, "stack_ms": st, "stack_best_ms": best,
        "speedup_vs_spconv_1t": {c: st["spconv_1t"] / st[c] for c in cols[1:]},
        "max_abs_err_vs_spconv": max_err,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def _cpu_model() -> str:
    from clean_deploy.bench.run import cpuinfo_field

    return cpuinfo_field("model name") or platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
