"""Prepare an exported clean_deploy student (``clean-deploy export``) for TensorRT's ONNX parser.

The exported graph runs as is in ONNX Runtime with our custom-op library; for TensorRT three things
change (the plugins are in ``libclean_deploy_trt_plugins.so``, see docs/tensorrt.md):

1. Sparse convolutions. A regular (strided) ``SparseConvolution`` has a data-dependent number of
   output sites: its plugin must output that count as a size tensor, and TensorRT's parser wants
   one node output per plugin output. By default (``--sparse split``) every node becomes
   ``SparseConvIndexPairs`` (rulebook: output sites + neighbour table [+ num_out]) and
   ``SparseConvGemm`` (implicit GEMM), as Autoware's plugins split spconv; submanifold layers that
   see the same sites with the same geometry share one index-pair node (spconv's ``indice_key``).
   ``--sparse fused`` keeps one ``SparseConvolution`` node per layer and only adds the ``num_out``
   output to regular convs.
2. ``IoUAwareRedundancyElimination`` has empty optional inputs (e.g. ``dir`` / ``anchors`` of a
   center head); they are dropped and the attribute ``present_inputs`` records the slots left.
3. Every clean_deploy node gets ``plugin_namespace="clean_deploy"`` and ``plugin_version="1"``, so
   parsers that do not fall back to the node's domain find the plugins too.
4. Shape bounds that fit the device. The output rows of a strided conv are data-dependent; TensorRT
   allocates them at their declared upper bound. ``max_batch`` (default 1: clean_deploy graphs are
   batch-1) caps them by the output grid's volume. ``--calibration DATA_DIR`` runs the exported model
   (ONNX Runtime with the project's op library) on that KITTI-format split, records every strided
   conv's output rows, and writes ``max_out_rows = ceil(max observed x --row-margin)`` and
   ``opt_rows`` (the observed mean) on it; a frame that exceeds a cap fails at enqueue instead of
   being truncated. ``plugins/tests/plugin_harness.cpp`` sums the resulting bounds.

    python plugins/prepare_onnx.py student.onnx student_trt.onnx [--sparse split|fused] [--max-batch 1]
        [--calibration data/kitti --split val --calibration-frames 64 --row-margin 1.5]

Needs ``onnx`` and the ``clean_deploy`` package (its op specification, ``clean_deploy/op_spec.py``, checks
and builds the nodes; ``--calibration`` also needs onnxruntime). The output is for TensorRT only (ONNX Runtime
has no ``SparseConvGemm``):
compare against the original model (docs/tensorrt.md shows the polygraphy commands).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx
from onnx import helper

from clean_deploy.op_spec import (DOMAIN, IOU_AWARE_RE_TRT, SPARSE_CONV_GEMM, SPARSE_CONV_INDEX_PAIRS,
                                  SPARSE_CONVOLUTION_TRT)

GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "subm", "spatial_shape")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _op_attrs(node: onnx.NodeProto) -> dict:
    """The node's attributes except those the ONNX parser itself reads (plugin lookup)."""
    return {k: v for k, v in _attrs(node).items() if k not in ("plugin_namespace", "plugin_version")}


def _plugin_attrs(node: onnx.NodeProto) -> None:
    names = {a.name for a in node.attribute}
    if "plugin_namespace" not in names:
        node.attribute.append(helper.make_attribute("plugin_namespace", DOMAIN))
    if "plugin_version" not in names:
        node.attribute.append(helper.make_attribute("plugin_version", "1"))


def _geometry_key(attrs: dict) -> tuple:
    def norm(v):
        return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v)

    defaults = {"stride": [1, 1, 1], "padding": [0, 0, 0], "dilation": [1, 1, 1]}
    return tuple(norm(attrs.get(k, defaults.get(k))) for k in GEOMETRY)


def strided_convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == "SparseConvolution"
            and int(_attrs(n).get("subm", 0)) != 1]


def measure_rows(src: Path, data: Path, split: str = "val", frames: int = 64) -> dict[str, dict]:
    """Output rows of every strided ``SparseConvolution`` of the exported model ``src`` on the first
    ``frames`` frames of a KITTI-format split: node name -> {"max", "mean", "frames"}."""
    import math

    import numpy as np
    import onnxruntime as ort

    from clean_deploy.bench.model_info import load_frames
    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.runtime.ort_ops import session_options
    from clean_deploy.runtime.preprocess import Preprocessor

    model = onnx.load(str(src))
    convs = [(n.name or n.output[0], n.output[1]) for n in strided_convs(model)]
    for _, out in convs:
        model.graph.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.INT32, None))
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(1),
                                providers=["CPUExecutionProvider"])
    # as the deployed pipeline feeds the engine: camera-FOV crop where a frame has calib (as the C++
    # sample with --calib), clouds capped at max_voxels (the engine's input profile)
    pre = Preprocessor.from_sidecar(read_sidecar(src.with_suffix(".json")), strict_max_voxels=False)
    seen: dict[str, list[int]] = {name: [] for name, _ in convs}
    for points, calib in load_frames(data, split, frames):
        b = pre(points, calib)
        if len(b["voxels"]) == 0:
            continue
        outs = sess.run([o for _, o in convs], {"voxels": b["voxels"].numpy().astype(np.float32),
                                                 "voxel_num_points": b["voxel_num_points"].numpy().astype(np.int32),
                                                 "voxel_coords": b["voxel_coords"].numpy().astype(np.int32)})
        for (name, _), o in zip(convs, outs):
            seen[name].append(int(o.shape[0]))
    if not any(seen.values()):
        raise ValueError(f"{data}: no frame of split '{split}' has points inside the model's range")
    return {k: {"max": max(v), "mean": int(math.ceil(sum(v) / len(v))), "frames": len(v)} for k, v in seen.items()}


def row_caps(measured: dict[str, dict], margin: float) -> dict[str, tuple[int, int]]:
    """node name -> (max_out_rows, opt_rows) from :func:`measure_rows`."""
    import math

    if margin < 1.0:
        raise ValueError(f"--row-margin must be >= 1, got {margin}")
    return {k: (max(1, int(math.ceil(v["max"] * margin))), max(1, v["mean"])) for k, v in measured.items()}


def prepare(model: onnx.ModelProto, sparse: str = "split", max_batch: int = 1,
            caps: dict[str, tuple[int, int]] | None = None) -> tuple[onnx.ModelProto, dict]:
    """Returns the TensorRT-ready model and a summary of what changed. ``caps``: strided conv node
    name -> (max_out_rows, opt_rows) (:func:`row_caps`)."""
    caps = caps or {}
    if sparse not in ("split", "fused"):
        raise ValueError(f"sparse must be 'split' or 'fused', got {sparse!r}")
    graph = model.graph
    graph_outputs = {o.name for o in graph.output}
    new_nodes: list[onnx.NodeProto] = []
    alias: dict[str, str] = {}  # output indices of a subm conv -> the (identical) input indices
    shared: dict[tuple, str] = {}  # (indices tensor, geometry) -> neighbour table of a subm conv
    summary = {"sparse_nodes": 0, "index_pair_nodes": 0, "shared_rulebooks": 0, "gemm_nodes": 0,
               "size_tensor_outputs": 0, "redundancy_nodes": 0, "capped_convs": 0}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
        if node.domain != DOMAIN:
            new_nodes.append(node)
            continue
        if node.op_type == "SparseConvolution":
            summary["sparse_nodes"] += 1
            attrs = _attrs(node)
            subm = int(attrs.get("subm", 0)) == 1
            name = node.name or node.output[0]
            cap = caps.get(name) if not subm else None
            if cap:
                summary["capped_convs"] += 1
            if sparse == "fused":
                if not subm and len(node.output) == 2:
                    node.output.append(f"{name}.num_out")
                    summary["size_tensor_outputs"] += 1
                if max_batch:
                    node.attribute.append(helper.make_attribute("max_batch", int(max_batch)))
                if cap:
                    node.attribute.append(helper.make_attribute("max_out_rows", int(cap[0])))
                    node.attribute.append(helper.make_attribute("opt_rows", int(cap[1])))
                SPARSE_CONVOLUTION_TRT.check_attributes(_op_attrs(node), name)
                _plugin_attrs(node)
                new_nodes.append(node)
                continue
            feats, idx, weight = node.input[0], node.input[1], node.input[2]
            bias = node.input[3] if len(node.input) > 3 and node.input[3] else None
            out_feats, out_idx = node.output[0], node.output[1]
            geo = {k: attrs[k] for k in GEOMETRY if k in attrs}
            if max_batch:
                geo["max_batch"] = int(max_batch)
            if cap:
                geo["max_out_rows"], geo["opt_rows"] = int(cap[0]), int(cap[1])
            key = (idx, _geometry_key(attrs))
            if subm and key in shared:
                nbr = shared[key]
                summary["shared_rulebooks"] += 1
            else:
                nbr = f"{name}.neighbors"
                outputs = [nbr] if subm else [out_idx, nbr, f"{name}.num_out"]
                pairs = SPARSE_CONV_INDEX_PAIRS.make_node([idx], outputs, f"{name}.index_pairs", **geo)
                _plugin_attrs(pairs)
                new_nodes.append(pairs)
                summary["index_pair_nodes"] += 1
                summary["size_tensor_outputs"] += 0 if subm else 1
                if subm:
                    shared[key] = nbr
            gemm = SPARSE_CONV_GEMM.make_node([feats, nbr, weight] + ([bias] if bias else []), [out_feats],
                                              f"{name}.gemm", activation=attrs.get("activation", "none"))
            _plugin_attrs(gemm)
            new_nodes.append(gemm)
            summary["gemm_nodes"] += 1
            if subm:  # the output sites are the input sites
                if out_idx in graph_outputs:
                    new_nodes.append(helper.make_node("Identity", [idx], [out_idx], name=f"{name}.indices"))
                else:
                    alias[out_idx] = idx
            continue
        if node.op_type == "IoUAwareRedundancyElimination":
            summary["redundancy_nodes"] += 1
            names = list(node.input) + [""] * (5 - len(node.input))
            present = [1 if n else 0 for n in names[:5]]
            del node.input[:]
            node.input.extend(n for n in names[:5] if n)
            if "present_inputs" not in {a.name for a in node.attribute}:
                node.attribute.append(helper.make_attribute("present_inputs", present))
            IOU_AWARE_RE_TRT.check_attributes(_op_attrs(node), node.name)
            _plugin_attrs(node)
            new_nodes.append(node)
            continue
        _plugin_attrs(node)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    # value_info of tensors that no longer exist (or changed shape) would mislead shape inference
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    keep = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    return model, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="exported student .onnx")
    ap.add_argument("dst", type=Path, help="TensorRT-ready .onnx to write")
    ap.add_argument("--sparse", choices=("split", "fused"), default="split",
                    help="split: SparseConvIndexPairs + SparseConvGemm (shared rulebooks, default); "
                         "fused: one SparseConvolution plugin per layer")
    ap.add_argument("--max-batch", type=int, default=1,
                    help="bound on the batch index of the voxel coordinates (default 1: clean_deploy's graphs are "
                         "batch-1): caps strided convs' output rows by the grid volume, fewer radix-sort passes; "
                         "0 = unbounded (bounds then compound through the layers)")
    ap.add_argument("--calibration", type=Path, default=None, metavar="DATA_DIR",
                    help="KITTI-format data whose frames set each strided conv's max_out_rows/opt_rows (clouds "
                         "cropped to camera 2's field of view, as the C++ sample with --calib feeds the engine; an "
                         "engine fed whole clouds needs caps measured on whole clouds)")
    ap.add_argument("--split", default="val", help="split of --calibration (default val)")
    ap.add_argument("--calibration-frames", type=int, default=64)
    ap.add_argument("--row-margin", type=float, default=1.5, help="max_out_rows = ceil(max observed x margin)")
    args = ap.parse_args(argv)
    if not args.src.is_file():
        print(f"prepare_onnx: error: {args.src}: no such file", file=sys.stderr)
        return 2
    caps = None
    if args.calibration is not None:
        try:
            measured = measure_rows(args.src, args.calibration, args.split, args.calibration_frames)
            caps = row_caps(measured, args.row_margin)
        except (OSError, ValueError) as e:
            print(f"prepare_onnx: error: --calibration: {e}", file=sys.stderr)
            return 2
        for k, (cap, opt) in caps.items():
            print(f"prepare_onnx: {k}: max_out_rows={cap} opt_rows={opt} (max observed {measured[k]['max']} on "
                  f"{measured[k]['frames']} frames)")
    model = onnx.load(str(args.src))
    model, summary = prepare(model, args.sparse, args.max_batch, caps)
    onnx.save(model, str(args.dst))
    print(f"prepare_onnx: wrote {args.dst}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
