"""``clean-deploy quantize``: static post-training int8 quantisation of an exported student.

Calibration (:mod:`.calibrate`) on frames of the train split; the dense 2D backbone and head
(Conv / ConvTranspose) through ONNX Runtime's QDQ quantiser (per-channel symmetric int8 weights,
symmetric int8 activations: the explicit-quantisation form TensorRT consumes); the sparse convs
through our own rewrite into ``SparseConvolutionInt8`` (:mod:`.sparse_int8`). Layers named in
``keep_fp32`` stay float32 (their weights optionally stored int8: :mod:`.weight_only`). Writes the
int8 model, its sidecar and a JSON report."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from clean_deploy.atomic import atomic_write
from clean_deploy.quantize.calibrate import Ranges, collect_ranges
from clean_deploy.quantize.config import QuantizeConfig
from clean_deploy.quantize.sparse_int8 import quantize_sparse_convs
from clean_deploy.quantize.weight_only import int8_weights

DENSE_OPS = ("Conv", "ConvTranspose")
#: ops quantised with them per target: for ONNX Runtime, Relu and Concat as well (their Q/DQ pairs
#: fold away: Relu into the preceding QLinearConv's uint8 range, Concat into QLinearConcat)
EXTRA_OPS = {"onnxruntime": ("Relu", "Concat"), "tensorrt": ()}


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def check_layers(model, keep_fp32, where) -> None:
    """ValueError naming the ``keep_fp32`` entries that are no node of ``model``."""
    missing = set(keep_fp32) - {n.name for n in model.graph.node}
    if missing:
        raise ValueError(f"keep_fp32: no node named {sorted(missing)} in {where}")


def quantize_dense(model, ranges: Ranges, keep_fp32: set[str], target: str = "onnxruntime"):
    """Conv / ConvTranspose nodes not in ``keep_fp32`` in QDQ int8 (ONNX Runtime's quantiser, fed
    our calibration ranges through its calibration-cache interface); see config.TARGETS."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[ranges.method]
    layers = [n.name for n in model.graph.node if n.op_type in DENSE_OPS and n.name not in keep_fp32]
    if not layers:
        return model, []
    # Relu / Concat only where they follow quantised layers: a Relu after a float32 layer stays float
    # (otherwise keeping a layer float32 would still put 8-bit activations right behind it)
    producer = {o: n for n in model.graph.node for o in n.output}
    chosen = set(layers)
    for n in model.graph.node:
        if n.op_type in EXTRA_OPS[target] and n.name not in keep_fp32:
            srcs = [producer.get(i) for i in n.input if i]
            if srcs and all(p is not None and p.name in chosen for p in srcs):
                chosen.add(n.name)
    targets = [n.name for n in model.graph.node if n.name in chosen]
    ops = DENSE_OPS + EXTRA_OPS[target]
    u8 = target == "onnxruntime"
    data = {k: TensorData(lowest=np.float32(a), highest=np.float32(b)) for k, (a, b) in ranges.ranges.items()}
    with tempfile.TemporaryDirectory(prefix="clean_deploy_quant.") as tmp:
        src, dst, cache = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx", Path(tmp) / "ranges.json"
        onnx.save(model, str(src))
        save_tensors_data(TensorsData(method, data), cache)
        hint = _DropPreprocessHint()
        logging.getLogger().addFilter(hint)  # ORT suggests its shape pre-pass; our graphs carry shapes
        try:
            quantize_static(str(src), str(dst), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(ops),
                            per_channel=True, activation_type=QuantType.QUInt8 if u8 else QuantType.QInt8,
                            weight_type=QuantType.QInt8, nodes_to_quantize=targets, calibrate_method=method,
                            calibration_cache_path=str(cache),
                            extra_options={"ActivationSymmetric": not u8, "WeightSymmetric": True})
        finally:
            logging.getLogger().removeFilter(hint)
        return onnx.load(str(dst)), layers


def _one_opset_per_domain(model) -> None:
    """Exports before 2026-12 repeated their opset imports (onnx.compose); keep one per domain."""
    from onnx import helper

    ops: dict[str, int] = {}
    for o in model.opset_import:
        ops[o.domain] = max(ops.get(o.domain, 0), o.version)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in ops.items())


def quantize_onnx(onnx_path: str | Path, out_path: str | Path, data_root: str | Path, cfg: QuantizeConfig,
                  threads: int | None = None, ranges: Ranges | None = None) -> dict:
    """Quantise ``onnx_path`` (an exported student with its sidecar) into ``out_path`` (+ sidecar and
    ``<out>.quant.json``); returns the report. ``ranges``: a calibration to reuse (same model)."""
    import onnx

    from clean_deploy.sidecar import read_sidecar

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if out_path.resolve() == onnx_path.resolve():
        raise ValueError(f"{out_path}: the quantised model would overwrite its float32 source")
    sidecar = read_sidecar(onnx_path.with_suffix(".json"))
    model = onnx.load(str(onnx_path))
    _one_opset_per_domain(model)
    keep = set(cfg.keep_fp32)
    check_layers(model, keep, onnx_path)
    if ranges is None:
        ranges = collect_ranges(model, sidecar, data_root, cfg, threads)
    dense_layers, sparse_report = [], []
    if cfg.dense:
        model, dense_layers = quantize_dense(model, ranges, keep, cfg.target)
    if cfg.sparse:
        model, sparse_report = quantize_sparse_convs(model, ranges, keep)
    int8_quantised = set(dense_layers) | {r["layer"] for r in sparse_report}
    kept = [n.name for n in model.graph.node
            if n.op_type in DENSE_OPS + ("SparseConvolution",) and n.name not in int8_quantised]
    weight_report = []
    if cfg.kept_weights == "int8" and kept:
        model, weight_report = int8_weights(model, kept)
    onnx.checker.check_model(model)
    atomic_write(out_path, lambda f: f.write(model.SerializeToString()))
    report = {
        "source": str(onnx_path), "model": out_path.name, "config": {**cfg.__dict__, "keep_fp32": sorted(keep)},
        "calibration": {"method": ranges.method, "frames": ranges.frames, "split": cfg.calib_split,
                        "data": str(data_root)},
        "int8_dense_layers": dense_layers, "int8_sparse_layers": sparse_report,
        "fp32_layers": sorted(kept), "int8_weight_only_layers": weight_report,
        "file_bytes": {"fp32": onnx_path.stat().st_size, "int8": out_path.stat().st_size},
    }
    side = dict(sidecar, model=out_path.name, quantization={k: report[k] for k in ("calibration", "fp32_layers")}
                | {"kept_weights": cfg.kept_weights})
    atomic_write(out_path.with_suffix(".json"), lambda f: f.write((json.dumps(side, indent=2) + "\n").encode()))
    atomic_write(out_path.with_suffix(".quant.json"),
                 lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    return report
