"""The exported student's sparse convolutions and redundancy elimination on the GPU (csrc/cuda through
ctypes), on real frames, against the CPU outputs (ONNX Runtime with our op library) of the same frames.

Two halves, because the GPU machine has no data set and no op library:

    # CPU machine: run the float32 model on a few real frames and keep what the GPU side needs
    .venv/bin/python benchmarks/gpu_student.py prepare --onnx benchmarks/results/deploy/compressed.onnx \\
        --data benchmarks/data/synth_test --split val --frames 3 --out benchmarks/gpu_inputs/student_frames.npz
    # GPU machine (or --dry-run anywhere: everything loaded and checked, no CUDA call)
    python benchmarks/gpu_student.py run --inputs benchmarks/gpu_inputs/student_frames.npz \\
        --out benchmarks/results/gpu/student_gpu.json [--reps 20] [--dry-run]

The inputs file holds, per frame, the sparse stack's input (VFE output and voxel coordinates), the
CPU's last sparse output, the head maps that feed the redundancy elimination and its CPU outputs,
plus every sparse layer's weights and geometry and the elimination's attributes (so the GPU side
needs neither the ONNX file nor the `onnx` package). Checks: output sites identical (same order),
features within 1e-3 of the CPU kernel (fp32; fp16 storage reported), the redundancy elimination's
kept boxes identical in count, labels and order and within 1e-4. Times: CUDA-event medians of the
GPU work (inputs already on the device), per layer and for the whole stack (the stack includes the
host reads of each strided layer's output count, as TensorRT's size tensors would).
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

RE_MAX_CLASSES = 64


class REParams(ctypes.Structure):
    """cdRedundancyParams (csrc/cuda/include/clean_deploy_cuda.h)."""

    _fields_ = [("head_type", ctypes.c_int32), ("num_classes", ctypes.c_int32), ("code_size", ctypes.c_int32),
                ("code_sincos", ctypes.c_int32), ("use_dir", ctypes.c_int32), ("num_dir_bins", ctypes.c_int32),
                ("dir_offset", ctypes.c_float), ("dir_limit_offset", ctypes.c_float), ("top_k", ctypes.c_int32),
                ("pc_range", ctypes.c_float * 6), ("cell_size", ctypes.c_float * 2),
                ("beta", ctypes.c_float * RE_MAX_CLASSES), ("min_iou", ctypes.c_float * RE_MAX_CLASSES),
                ("nms_thresh", ctypes.c_float * RE_MAX_CLASSES), ("score_thresh", ctypes.c_float),
                ("cross_class_thresh", ctypes.c_float), ("pre_max", ctypes.c_int32), ("max_output", ctypes.c_int32)]


def re_params(attrs: dict) -> REParams:
    """The plugin's attribute parsing (plugins/src/redundancy_plugin.cpp), center heads only here."""
    if attrs["head_type"] != "center":
        raise SystemExit(f"gpu_student: head_type {attrs['head_type']!r}: only center-head students are handled")
    from clean_deploy.op_spec import IOU_AWARE_RE

    attrs = IOU_AWARE_RE.check_attributes(attrs, "post")
    attrs = {**{a.name: a.default for a in IOU_AWARE_RE.attrs if a.default is not None}, **attrs}  # the spec's defaults
    p = REParams()
    p.head_type, p.num_classes = 1, int(attrs["num_classes"])
    p.code_sincos = int(attrs["code_sincos"])
    p.code_size = 8 if p.code_sincos else 7
    p.use_dir = int(attrs["use_dir"])
    p.num_dir_bins = int(attrs["num_dir_bins"])
    p.dir_offset = float(attrs["dir_offset"])
    p.dir_limit_offset = float(attrs["dir_limit_offset"])
    p.top_k = int(attrs["top_k"])
    for i, v in enumerate(attrs["pc_range"]):
        p.pc_range[i] = float(v)
    for i, v in enumerate(attrs["cell_size"]):
        p.cell_size[i] = float(v)
    for c in range(p.num_classes):
        p.beta[c], p.min_iou[c], p.nms_thresh[c] = (float(attrs[k][c]) for k in ("beta", "min_iou", "nms_thresh"))
    p.score_thresh = float(attrs["score_thresh"])
    p.cross_class_thresh = float(attrs["cross_class_thresh"])
    p.pre_max, p.max_output = int(attrs["pre_max"]), int(attrs["max_output"])
    return p


# ---------------------------------------------------------------------------------- prepare (CPU)
def prepare(args) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.quantize.calibrate import augmented_model, calibration_inputs
    from clean_deploy.runtime.ort_ops import session_options

    model = onnx.load(str(args.onnx))
    side = read_sidecar(args.onnx.with_suffix(".json"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    sparse = [n for n in model.graph.node if n.op_type == "SparseConvolution"]
    re_node = next(n for n in model.graph.node if n.op_type == "IoUAwareRedundancyElimination")
    def attr(n) -> dict:  # JSON-ready attribute values: str, number or list
        out = {}
        for a in n.attribute:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else list(v) if isinstance(v, (list, tuple)) else v
        return out

    re_attrs = attr(re_node)
    head_inputs = [i for i in re_node.input if i]
    wanted = [sparse[0].input[0], sparse[0].input[1], sparse[-1].output[0], sparse[-1].output[1], *head_inputs]
    int32 = {wanted[1], wanted[3]}
    sess = ort.InferenceSession(augmented_model(model, wanted, int32).SerializeToString(), session_options(1),
                                providers=["CPUExecutionProvider"])
    out = {}
    layers = []
    for i, n in enumerate(sparse):
        out[f"w{i}"] = inits[n.input[2]]
        out[f"b{i}"] = inits[n.input[3]] if len(n.input) > 3 and n.input[3] else np.zeros(len(inits[n.input[2]]),
                                                                                             np.float32)
        layers.append(attr(n))
    frames = 0
    for f, feed in enumerate(calibration_inputs(side, args.data, args.split, args.frames)):
        outs = sess.run(None, feed)
        names = [o.name for o in model.graph.output] + wanted
        got = dict(zip(names, outs))
        out[f"f{f}_features"], out[f"f{f}_indices"] = got[wanted[0]], got[wanted[1]]
        out[f"f{f}_last_features"], out[f"f{f}_last_indices"] = got[wanted[2]], got[wanted[3]]
        for j, name in enumerate(head_inputs):
            out[f"f{f}_head{j}"] = got[name]
        for name in ("boxes", "scores", "labels", "valid_count"):
            out[f"f{f}_re_{name}"] = got[name]
        frames += 1
    meta = {"onnx": str(args.onnx), "frames": frames, "layers": layers, "re": re_attrs,
            "head_inputs": head_inputs, "date": str(date.today())}
    out["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"gpu_student: wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MB, {frames} frames, "
          f"{len(layers)} sparse layers)")


# ---------------------------------------------------------------------------------- run (GPU)
def run(args) -> None:
    data = np.load(args.inputs)
    meta = json.loads(bytes(data["meta"]).decode())
    layers = meta["layers"]
    params = re_params(meta["re"])
    for i, lay in enumerate(layers):  # everything the GPU side needs is there and consistent
        w = data[f"w{i}"]
        if w.ndim != 5 or list(w.shape[1:4]) != list(lay["kernel_size"]):
            raise SystemExit(f"gpu_student: layer {i}: weight {w.shape} does not match kernel_size {lay['kernel_size']}")
    for f in range(meta["frames"]):
        if data[f"f{f}_features"].shape[1] != data["w0"].shape[4]:
            raise SystemExit(f"gpu_student: frame {f}: features do not match the first layer's Cin")
    plan = (f"{meta['frames']} frames, {len(layers)} sparse layers, redundancy elimination "
            f"({params.num_classes} classes, max_output {params.max_output}); library {args.lib}")
    if args.dry_run:
        if not args.lib.is_file():
            raise SystemExit(f"gpu_student: --dry-run: {args.lib} not built (bash scripts/build_csrc.sh with nvcc)")
        print(f"gpu_student: dry run OK: {plan}; nothing launched")
        return

    import torch

    from sparse_conv_gpu import CudaConv, check, cuda_time, load_cuda_lib

    if not torch.cuda.is_available():
        raise SystemExit("gpu_student: no CUDA GPU is available (torch.cuda.is_available() is False); "
                         "--dry-run checks the inputs without one")
    lib = load_cuda_lib(args.lib)
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.cdRedundancyWorkspaceSize.restype = ctypes.c_size_t
    lib.cdRedundancyWorkspaceSize.argtypes = [ctypes.POINTER(REParams), i64, i64, i64]
    lib.cdRedundancyForward.restype = ctypes.c_int
    lib.cdRedundancyForward.argtypes = [ctypes.POINTER(REParams), ctypes.c_int32, i64, i64, i64] + [vp] * 10 + [
        ctypes.c_size_t, vp]
    device = torch.cuda.get_device_name(0)
    print(f"gpu_student: {plan} on {device}")

    class Spec:  # the fields CudaConv reads
        def __init__(self, i, lay):
            self.weight, self.bias = data[f"w{i}"], data[f"b{i}"]
            self.stride, self.padding, self.dilation = lay["stride"], lay["padding"], lay["dilation"]
            self.spatial_shape, self.subm, self.activation = lay["spatial_shape"], int(lay["subm"]), lay["activation"]

    convs = [CudaConv(lib, Spec(i, lay), torch) for i, lay in enumerate(layers)]
    per_layer = [[] for _ in layers]
    stack_ms, re_ms = [], []
    max_err, max_err16, re_box_err = 0.0, 0.0, 0.0
    for f in range(meta["frames"]):
        x_f = torch.from_numpy(data[f"f{f}_features"]).cuda()
        x_i = torch.from_numpy(data[f"f{f}_indices"]).cuda()

        def stack(dtype_code: int = 0):
            feat, idx = (x_f.half() if dtype_code else x_f), x_i
            for conv in convs:
                y, yi, num, err = conv(feat, idx, dtype_code)
                m = int(num.item())
                feat, idx = y[:m], yi[:m]
            return feat, idx

        ms, (yf, yi) = cuda_time(torch, stack, args.reps)
        stack_ms.append(ms)
        cpu_f, cpu_i = data[f"f{f}_last_features"], data[f"f{f}_last_indices"]
        if not np.array_equal(yi.cpu().numpy(), cpu_i):
            raise SystemExit(f"gpu_student: frame {f}: the GPU stack's output sites differ from the CPU kernel's")
        max_err = max(max_err, float(np.abs(yf.cpu().numpy() - cpu_f).max()) if len(cpu_f) else 0.0)
        _, (yf16, _) = cuda_time(torch, lambda: stack(1), 3)
        max_err16 = max(max_err16, float(np.abs(yf16.float().cpu().numpy() - cpu_f).max()) if len(cpu_f) else 0.0)
        feat, idx = x_f, x_i
        for li, conv in enumerate(convs):
            ms, (y, yi2, num, err) = cuda_time(torch, lambda c=conv, a=feat, b=idx: c(a, b, 0), args.reps)
            if int(err.item()):
                raise SystemExit(f"gpu_student: layer {li}: data error flags {int(err.item())}")
            per_layer[li].append(ms)
            m = int(num.item())
            feat, idx = y[:m].contiguous(), yi2[:m].contiguous()
        # redundancy elimination on the CPU's head maps
        heads = [torch.from_numpy(np.ascontiguousarray(data[f"f{f}_head{j}"], np.float32)).cuda()
                 for j in range(len(meta["head_inputs"]))]
        hm, reg = heads[0], heads[1]
        iou = heads[2] if len(heads) > 2 else None
        _, _, h, w = hm.shape
        m = params.max_output
        boxes = torch.zeros((1, m, 7), device="cuda")
        scores = torch.zeros((1, m), device="cuda")
        labels = torch.zeros((1, m), dtype=torch.int32, device="cuda")
        valid = torch.zeros(1, dtype=torch.int32, device="cuda")
        ws = lib.cdRedundancyWorkspaceSize(ctypes.byref(params), 0, h, w)
        if ws == 0:
            raise SystemExit(f"gpu_student: redundancy workspace query failed: {lib.cdCudaLastError().decode()}")
        work = torch.empty(ws, dtype=torch.uint8, device="cuda")

        def eliminate():
            check(lib, lib.cdRedundancyForward(ctypes.byref(params), 1, 0, h, w, hm.data_ptr(), reg.data_ptr(), None,
                                               iou.data_ptr() if iou is not None else None, None, boxes.data_ptr(),
                                               scores.data_ptr(), labels.data_ptr(), valid.data_ptr(), work.data_ptr(),
                                               ws, torch.cuda.current_stream().cuda_stream),
                  "cdRedundancyForward")

        ms, _ = cuda_time(torch, eliminate, args.reps)
        re_ms.append(ms)
        n = int(valid.item())
        if n != int(data[f"f{f}_re_valid_count"][0]):
            raise SystemExit(f"gpu_student: frame {f}: {n} boxes kept on the GPU, "
                             f"{int(data[f'f{f}_re_valid_count'][0])} on the CPU")
        if not np.array_equal(labels.cpu().numpy()[0, :n], data[f"f{f}_re_labels"][0, :n]):
            raise SystemExit(f"gpu_student: frame {f}: kept labels (or their order) differ from the CPU's")
        re_box_err = max(re_box_err, float(np.abs(boxes.cpu().numpy()[0, :n] - data[f"f{f}_re_boxes"][0, :n]).max())
                         if n else 0.0)
    if max_err > 1e-3 or re_box_err > 1e-4:
        raise SystemExit(f"gpu_student: GPU vs CPU differences too large: sparse {max_err:.2e}, boxes {re_box_err:.2e}")
    res = {"date": str(date.today()), "device": device, "frames": meta["frames"], "reps": args.reps,
           "source": meta["onnx"],
           "sparse_stack_ms": {"median": statistics.median(stack_ms), "per_frame": stack_ms},
           "sparse_layers_ms": [statistics.median(v) for v in per_layer],
           "redundancy_ms": {"median": statistics.median(re_ms), "per_frame": re_ms},
           "max_abs_diff_vs_cpu": {"sparse_fp32": max_err, "sparse_fp16": max_err16, "re_boxes": re_box_err}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--onnx", type=Path, default=REPO / "benchmarks" / "results" / "deploy" / "compressed.onnx")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "gpu_inputs" / "student_frames.npz")
    r = sub.add_parser("run")
    r.add_argument("--inputs", type=Path, default=ROOT / "gpu_inputs" / "student_frames.npz")
    r.add_argument("--lib", type=Path, default=REPO / "build" / "csrc" / "cuda" / "libclean_deploy_cuda.so")
    r.add_argument("--reps", type=int, default=20)
    r.add_argument("--out", type=Path, default=ROOT / "results" / "gpu" / "student_gpu.json")
    r.add_argument("--dry-run", action="store_true", help="load and check everything, launch nothing")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args)
    else:
        if not args.inputs.is_file():
            raise SystemExit(f"gpu_student: {args.inputs} missing: make it on a CPU machine with `gpu_student.py prepare`")
        run(args)


if __name__ == "__main__":
    main()
