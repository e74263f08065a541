"""Activation ranges of an exported model on real frames: every float tensor of the graph is made an
output, the model runs (with our custom ops) on the calibration frames, and each tensor's range is
taken by min-max, percentile or entropy (ONNX Runtime's histogram implementation of the last two)."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clean_deploy.quantize.config import QuantizeConfig

#: ops whose first output is a float tensor worth a range (everything else in our graphs either has
#: no float output or is not quantised: shapes, indices, the redundancy elimination's boxes)
_FLOAT_OUTPUT_OPS = {"SparseConvolution", "Conv", "ConvTranspose", "Relu", "Concat", "Div", "ScatterND",
                     "Transpose", "Reshape", "Gather", "Add", "Mul", "MaxPool", "Sigmoid", "Clip"}


@dataclass
class Ranges:
    """Per-tensor (lowest, highest) of one calibration, with how it was made."""

    method: str
    frames: int
    ranges: dict[str, tuple[float, float]]

    def absmax(self, name: str) -> float:
        lo, hi = self.ranges[name]
        return max(abs(lo), abs(hi))

    def to_json(self) -> dict:
        return {"method": self.method, "frames": self.frames,
                "ranges": {k: [float(a), float(b)] for k, (a, b) in sorted(self.ranges.items())}}


def float_tensors(model) -> list[str]:
    """Names of the float tensors to calibrate: the first output of every op in _FLOAT_OUTPUT_OPS
    (sparse convs included) whose type, where shape inference knows it, is float32."""
    import onnx
    from onnx import TensorProto

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    except Exception:  # custom domains can stop inference early; the op list below still holds
        types = {}
    names = []
    for node in model.graph.node:
        if node.op_type in _FLOAT_OUTPUT_OPS and node.output and node.output[0]:
            t = types.get(node.output[0], TensorProto.FLOAT)
            if t == TensorProto.FLOAT:
                names.append(node.output[0])
    return list(dict.fromkeys(names))


def augmented_model(model, names: list[str], int32: frozenset[str] | set[str] = frozenset()):
    """Copy of ``model`` with ``names`` added as graph outputs (float32, those in ``int32`` int32)."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.INT32 if n in int32 else TensorProto.FLOAT,
                                                                None))
    return m


def calibration_inputs(sidecar: dict, data_root: str | Path, split: str, frames: int):
    """Voxelised inputs of the first ``frames`` frames of ``split`` (the exported model's own
    pre-processing, FOV crop included)."""
    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.runtime.preprocess import Preprocessor

    reader = KittiReader(data_root, split)
    ids = reader.frame_ids[:frames]
    if not ids:
        raise ValueError(f"{data_root}: split {split!r} has no frames to calibrate on")
    pre = Preprocessor.from_sidecar(sidecar, strict_max_voxels=False)
    for fid in ids:
        b = pre(reader.read_points(fid), reader.read_calib(fid), reader.read_image_shape(fid))
        if len(b["voxels"]) == 0:
            continue
        yield {"voxels": b["voxels"].numpy(), "voxel_num_points": b["voxel_num_points"].numpy().astype(np.int32),
               "voxel_coords": b["voxel_coords"].numpy().astype(np.int32)}


def collect_ranges(model, sidecar: dict, data_root: str | Path, cfg: QuantizeConfig, threads: int | None = None,
                   names: list[str] | None = None) -> Ranges:
    """Ranges of ``names`` (default :func:`float_tensors`) over ``cfg.calib_frames`` frames."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import HistogramCollector

    from clean_deploy.runtime.ort_ops import session_options

    names = names if names is not None else float_tensors(model)
    sess = ort.InferenceSession(augmented_model(model, names).SerializeToString(), sess_options=session_options(threads),
                                providers=["CPUExecutionProvider"])
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    collector = None
    if cfg.method == "percentile":
        collector = HistogramCollector("percentile", True, 2048, 128, cfg.percentile, "same")
    elif cfg.method == "entropy":
        collector = HistogramCollector("entropy", False, 128, 128, cfg.percentile, "same")
    used = 0
    for feed in tqdm(calibration_inputs(sidecar, data_root, cfg.calib_split, cfg.calib_frames),
                     total=cfg.calib_frames, desc=f"calibrate ({cfg.method})", leave=False):
        outs = dict(zip(names, sess.run(names, feed)))
        for n, a in outs.items():
            if a.size:
                lo[n] = min(lo[n], float(a.min()))
                hi[n] = max(hi[n], float(a.max()))
        if collector is not None:
            with contextlib.redirect_stdout(io.StringIO()):  # ORT's collector prints per call
                collector.collect({n: [a] for n, a in outs.items() if a.size})
        used += 1
    if used == 0:
        raise ValueError(f"{data_root}: no calibration frame has a point inside the model's range")
    ranges = {n: (lo[n], hi[n]) for n in names if np.isfinite(lo[n])}
    if collector is not None:
        with contextlib.redirect_stdout(io.StringIO()):
            res = collector.compute_collection_result()
        for n, v in res.items():
            a, b = (float(np.asarray(x).reshape(-1)[0]) for x in (v.range_value if hasattr(v, "range_value") else v[:2]))
            # never wider than what was seen (the histogram edges can round outwards)
            ranges[n] = (max(a, ranges[n][0]), min(b, ranges[n][1]))
    return Ranges(cfg.method, used, ranges)
