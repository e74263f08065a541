"""GPU sparse convolution: clean_deploy's CUDA kernels (csrc/cuda, called through ctypes on
build/csrc/cuda/libclean_deploy_cuda.so) against spconv-cu126 2.3.8 on the GPU and against our CPU
kernel (the ONNX Runtime op, 1 thread), on SECOND's VoxelBackBone8x layer stack over synthetic
KITTI-like frames (the layers, frames and folded weights of benchmarks/sparse_conv_cpu.py).

Run on a GPU machine (H100 or Jetson Orin), after `bash scripts/build_csrc.sh` built the CUDA
library there or with build/csrc/cuda carried over (built for sm_87 and sm_90):

    PYTHONPATH=/tmp/site:. python benchmarks/sparse_conv_gpu.py [--frames 2] [--reps 20] [--no-cpu]

spconv-cu126 comes from /work/shared/gpu/pack-spconv-gpu.sh (`bash .gpu/install.sh` puts it in
/tmp/site). Per layer, every side builds its rulebook from scratch (spconv: a fresh
SparseConvTensor, no indice_key cache); times are CUDA-event medians of the GPU work only (inputs
already on the device, synchronised before and after). Checks: output sites identical to the CPU
kernel (same order) and to spconv (as sets), features within 1e-3 (fp32) of both; fp16 storage is
timed and compared with the fp32 result. Writes benchmarks/results/sparse_conv_gpu.json naming the
device. Exits with a clear message when there is no CUDA GPU.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(ROOT))


# ---- ctypes binding of csrc/cuda/include/clean_deploy_cuda.h -------------------------------------

class Geometry(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32 * 3) for n in ("kernel", "stride", "padding", "dilation", "in_shape")] + [
        ("subm", ctypes.c_int32), ("max_batch", ctypes.c_int32)]


def load_cuda_lib(path: Path) -> ctypes.CDLL:
    if not path.is_file():
        raise SystemExit(f"sparse_conv_gpu: {path} not found: build it with `bash scripts/build_csrc.sh` "
                         "(needs nvcc) or pass --lib")
    lib = ctypes.CDLL(str(path))
    p, i32, i64, sz = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_size_t
    g = ctypes.POINTER(Geometry)
    lib.cdCudaLastError.restype = ctypes.c_char_p
    lib.cdSparseConvMaxOutputsPerInput.argtypes, lib.cdSparseConvMaxOutputsPerInput.restype = [g], i64
    lib.cdSparseConvKernelVolume.argtypes, lib.cdSparseConvKernelVolume.restype = [g], i64
    lib.cdSparseConvRulebookWorkspaceSize.argtypes, lib.cdSparseConvRulebookWorkspaceSize.restype = [g, i64], sz
    lib.cdSparseConvRulebook.argtypes = [g, p, i64, i64, p, p, p, p, p, sz, p]
    lib.cdSparseConvGemm.argtypes = [ctypes.c_int, p, i64, i32, p, i64, p, i32, p, p, i32, i32, p, p]
    return lib


def check(lib, status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what}: status {status}: {lib.cdCudaLastError().decode()}")


class CudaConv:
    """One SparseConvolution layer on the GPU through the C API (buffers from torch)."""

    def __init__(self, lib, spec, torch):
        self.lib, self.torch = lib, torch
        t3 = ctypes.c_int32 * 3
        w = spec.weight  # [Cout, kD, kH, kW, Cin]
        tri = lambda v: [int(v)] * 3 if np.isscalar(v) else [int(x) for x in v]  # noqa: E731
        self.g = Geometry(t3(*w.shape[1:4]), t3(*tri(spec.stride)), t3(*tri(spec.padding)), t3(*tri(spec.dilation)),
                          t3(*tri(spec.spatial_shape)), int(spec.subm), 1)
        self.cout, self.cin = int(w.shape[0]), int(w.shape[4])
        self.K = int(lib.cdSparseConvKernelVolume(ctypes.byref(self.g)))
        self.fan = int(lib.cdSparseConvMaxOutputsPerInput(ctypes.byref(self.g)))
        self.weight = torch.from_numpy(np.ascontiguousarray(w.reshape(self.cout, -1))).cuda()
        bias = spec.bias if spec.bias is not None else np.zeros(self.cout, np.float32)
        self.bias = torch.from_numpy(np.ascontiguousarray(bias, np.float32)).cuda()
        self.relu = int(spec.activation == "relu")

    def rulebook(self, idx):
        torch, lib = self.torch, self.lib
        n = idx.shape[0]
        max_out = n * self.fan
        ws = lib.cdSparseConvRulebookWorkspaceSize(ctypes.byref(self.g), n)
        if ws == 0 and n > 0:
            raise RuntimeError(lib.cdCudaLastError().decode())
        work = torch.empty(max(ws, 1), dtype=torch.uint8, device="cuda")
        out_idx = torch.empty((max(max_out, 1), 4), dtype=torch.int32, device="cuda")
        nbr = torch.empty((max(max_out, 1), self.K), dtype=torch.int32, device="cuda")
        num = torch.empty(1, dtype=torch.int32, device="cuda")
        err = torch.zeros(1, dtype=torch.int32, device="cuda")
        stream = torch.cuda.current_stream().cuda_stream
        check(lib, lib.cdSparseConvRulebook(ctypes.byref(self.g), idx.data_ptr(), n, max_out,
                                            None if self.g.subm else out_idx.data_ptr(), nbr.data_ptr(),
                                            num.data_ptr(), err.data_ptr(), work.data_ptr(), ws, stream),
              "cdSparseConvRulebook")
        return out_idx, nbr, num, err, max_out

    def gemm(self, feats, nbr, num, max_out, dtype_code: int):
        torch = self.torch
        out = torch.empty((max(max_out, 1), self.cout), dtype=feats.dtype, device="cuda")
        check(self.lib, self.lib.cdSparseConvGemm(dtype_code, feats.data_ptr(), feats.shape[0], self.cin,
                                                  nbr.data_ptr(), max_out, num.data_ptr(), self.K,
                                                  self.weight.data_ptr(), self.bias.data_ptr(), self.cout, self.relu,
                                                  out.data_ptr(), torch.cuda.current_stream().cuda_stream),
              "cdSparseConvGemm")
        return out

    def __call__(self, feats, idx, dtype_code: int = 0):
        out_idx, nbr, num, err, max_out = self.rulebook(idx)
        out = self.gemm(feats, nbr, num, max_out, dtype_code)
        return out, (idx if self.g.subm else out_idx), num, err


def cuda_time(torch, fn, reps: int) -> tuple[float, object]:
    """Median milliseconds of fn() on the GPU (CUDA events), after a warm-up."""
    result = fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--lib", type=Path, default=REPO / "build" / "csrc" / "cuda" / "libclean_deploy_cuda.so")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU kernel (ONNX Runtime op) columns")
    ap.add_argument("--no-spconv", action="store_true", help="skip spconv")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "sparse_conv_gpu.json")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("sparse_conv_gpu: no CUDA GPU is available (torch.cuda.is_available() is False): "
                         "run this benchmark on a GPU machine (H100 / Jetson Orin)")
    lib = load_cuda_lib(args.lib)
    if lib.cdCudaDeviceCount() < 1:
        raise SystemExit(f"sparse_conv_gpu: the CUDA library sees no device: {lib.cdCudaLastError().decode()}")
    device = torch.cuda.get_device_name(0)

    from sparse_conv_cpu import LAYERS, SPATIAL_SHAPE, build_spconv, load_frame, sort_rows, specs

    mods = build_spconv()
    layer_specs = specs(mods)
    convs = [CudaConv(lib, s, torch) for s in layer_specs]
    spconv = None
    if not args.no_spconv:
        try:
            import spconv.pytorch as spconv  # noqa: F811
            mods = [m.cuda().eval() for m in mods]
        except ImportError as err:
            print(f"spconv not importable ({err}): skipping the spconv columns (see /work/shared/gpu/README.md)")
    sessions = None
    if not args.no_cpu:
        try:
            from clean_deploy.runtime.ort_ops import make_sparse_conv_model, sparse_conv_session
            sessions = [sparse_conv_session(make_sparse_conv_model(s), 1) for s in layer_specs]
        except Exception as err:  # noqa: BLE001 - missing ORT / custom-op library: report and go on
            print(f"CPU kernel unavailable ({err}): skipping the CPU columns")

    cols = ["ours_fp32", "ours_fp16", "ours_rulebook"] + (["spconv"] if spconv else []) + (["cpu_1t"] if sessions else [])
    per_layer = {name: {c: [] for c in cols} for name, *_ in LAYERS}
    info: dict[str, list] = {}
    stack = {"ours_fp32": [], "ours_fp16": []}
    errs = {"vs_cpu": 0.0, "vs_spconv": 0.0, "fp16_vs_fp32_rel": 0.0}
    frames = []
    for fi in range(args.frames):
        feats_np, idx_np = load_frame(fi)
        frames.append(int(len(idx_np)))
        print(f"frame {fi}: {len(idx_np)} voxels on {device}")
        x_f = torch.from_numpy(feats_np).cuda()
        x_i = torch.from_numpy(idx_np).cuda()
        shape = SPATIAL_SHAPE
        for li, ((name, cin, cout, *_), conv) in enumerate(zip(LAYERS, convs)):
            ms, (y, y_i, num, err) = cuda_time(torch, lambda c=conv, f=x_f, i=x_i: c(f, i, 0), args.reps)
            m = int(num.item())
            assert int(err.item()) == 0, f"{name}: data error flags {int(err.item())}"
            y, y_i = y[:m], y_i[:m]
            per_layer[name]["ours_fp32"].append(ms)
            ms_rb, _ = cuda_time(torch, lambda c=conv, i=x_i: c.rulebook(i), args.reps)
            per_layer[name]["ours_rulebook"].append(ms_rb)
            ms16, (y16, *_rest) = cuda_time(torch, lambda c=conv, f=x_f.half(), i=x_i: c(f, i, 1), args.reps)
            per_layer[name]["ours_fp16"].append(ms16)
            y16 = y16[:m].float()
            errs["fp16_vs_fp32_rel"] = max(errs["fp16_vs_fp32_rel"],
                                           float(((y16 - y).abs() / y.abs().clamp_min(1.0)).max()) if m else 0.0)
            of, oi = y.cpu().numpy(), y_i.cpu().numpy()
            if sessions:
                import time
                feed = {"features": x_f.cpu().numpy(), "indices": x_i.cpu().numpy()}
                t = []
                for _ in range(max(3, args.reps // 4)):
                    t0 = time.perf_counter()
                    cf, ci = sessions[li].run(None, feed)
                    t.append((time.perf_counter() - t0) * 1e3)
                per_layer[name]["cpu_1t"].append(statistics.median(t))
                assert np.array_equal(ci, oi), f"{name}: output sites (or their order) differ from the CPU kernel"
                errs["vs_cpu"] = max(errs["vs_cpu"], float(np.abs(cf - of).max()) if m else 0.0)
            if spconv:
                with torch.no_grad():
                    ms_sp, ys = cuda_time(torch, lambda mm=mods[li], f=x_f, i=x_i, s=shape:
                                          mm(spconv.SparseConvTensor(f, i, s, 1)), args.reps)
                per_layer[name]["spconv"].append(ms_sp)
                rf, ri = sort_rows(ys.features.float().cpu().numpy(), ys.indices.cpu().numpy())
                sf, si = sort_rows(of, oi)
                assert np.array_equal(ri, si), f"{name}: output sites differ from spconv"
                errs["vs_spconv"] = max(errs["vs_spconv"], float(np.abs(rf - sf).max()) if m else 0.0)
            info.setdefault(name, []).append({"n_in": int(x_i.shape[0]), "n_out": m})
            x_f, x_i = y.contiguous(), y_i.contiguous()
            shape = layer_specs[li].out_spatial_shape(shape)

        def run_stack(dtype_code: int):
            f = torch.from_numpy(feats_np).cuda()
            f = f.half() if dtype_code else f
            i = torch.from_numpy(idx_np).cuda()
            for conv in convs:
                y, yi, num, _ = conv(f, i, dtype_code)
                m = int(num.item())  # the next layer's size (a device-to-host sync, as TensorRT's size tensors)
                f, i = y[:m], yi[:m]
            return f

        for key, code in (("ours_fp32", 0), ("ours_fp16", 1)):
            ms, _ = cuda_time(torch, lambda c=code: run_stack(c), args.reps)
            stack[key].append(ms)

    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    print(f"\nper layer on {device} (ms, median of {args.reps}, mean over {args.frames} frames; rulebook included)")
    print(f"{'layer':<11} {'cin>cout':>8} {'n_in':>6} {'n_out':>6} " + " ".join(f"{c:>13}" for c in cols))
    rows = []
    for name, cin, cout, *_ in LAYERS:
        v = {c: mean(per_layer[name][c]) for c in cols}
        n_in = int(np.mean([d["n_in"] for d in info[name]]))
        n_out = int(np.mean([d["n_out"] for d in info[name]]))
        print(f"{name:<11} {f'{cin}>{cout}':>8} {n_in:>6} {n_out:>6} " + " ".join(f"{v[c]:>13.3f}" for c in cols))
        rows.append({"layer": name, "cin": cin, "cout": cout, "n_in": n_in, "n_out": n_out, **v})
    total = {c: sum(r[c] for r in rows) for c in cols}
    print(f"{'sum':<11} {'':>8} {'':>6} {'':>6} " + " ".join(f"{total[c]:>13.3f}" for c in cols))
    st = {k: mean(v) for k, v in stack.items()}
    print(f"stack (chained, with the per-layer count sync): fp32 {st['ours_fp32']:.3f} ms, fp16 {st['ours_fp16']:.3f} ms")
    # a comparison that did not run is None in the JSON, never a zero error
    errs = {**errs, "vs_cpu": errs["vs_cpu"] if sessions else None, "vs_spconv": errs["vs_spconv"] if spconv else None}
    fmt = lambda v: "not run" if v is None else f"{v:.2e}"  # noqa: E731
    print(f"max |ours - CPU kernel| {fmt(errs['vs_cpu'])}, max |ours - spconv| {fmt(errs['vs_spconv'])}, "
          f"max fp16 relative error {fmt(errs['fp16_vs_fp32_rel'])}")

    result = {
        "date": date.today().isoformat(),
        "device": device,
        "machine": {"torch": torch.__version__, "cuda": torch.version.cuda,
                    "spconv": getattr(spconv, "__version__", "spconv-cu126 2.3.8") if spconv else None,
                    "capability": list(torch.cuda.get_device_capability(0))},
        "grid": SPATIAL_SHAPE, "frames_voxels": frames, "reps": args.reps,
        "per_layer_ms": rows, "per_layer_sum_ms": total, "stack_ms": st, "max_abs_err": errs,
        "notes": "ours_* = csrc/cuda through ctypes (rulebook + gather-GEMM, float32 accumulation); "
                 "ours_rulebook = the index-pair step alone; spconv = SparseConv3d/SubMConv3d + BN + ReLU (GPU); "
                 "cpu_1t = the ONNX Runtime op on one CPU thread (wall clock)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
