"""Rewrite of an exported graph's ``clean_deploy::SparseConvolution`` nodes into
``clean_deploy::SparseConvolutionInt8`` (docs/custom_ops.md): per-output-channel symmetric int8
weights, int32 bias, per-tensor activation scales from a calibration. Consecutive int8 sparse convs
pass int8 features to each other directly; a QuantizeLinear enters the chain where its input is
float, a DequantizeLinear leaves it where a float consumer (the BEV scatter, a float32 layer) needs it."""
from __future__ import annotations

import numpy as np

from clean_deploy.op_spec import SPARSE_CONVOLUTION_INT8
from clean_deploy.quantize.calibrate import Ranges

QMAX = 127  # symmetric int8: [-127, 127] for weights; activations clamp at -128 only on rounding


def weight_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 weights: (w_q int8, scale float32 [Cout]), scale =
    max |w[co]| / 127 (an all-zero channel gets scale 1, its weights stay 0)."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(1)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -QMAX, QMAX).astype(np.int8)
    return q, scale


def activation_scale(ranges: Ranges, name: str) -> np.float32:
    """Symmetric per-tensor scale of a calibrated tensor (absmax / 127; a tensor that was always 0 gets 1)."""
    if name not in ranges.ranges:
        raise ValueError(f"tensor {name!r} has no calibration range: it was empty on every calibration frame "
                         "(calibrate on more frames, or keep the layer float32 with --keep-fp32)")
    a = ranges.absmax(name)
    return np.float32(a / QMAX if a > 0 else 1.0)


def bias_int32(b: np.ndarray, x_scale: np.float32, w_scale: np.ndarray) -> np.ndarray:
    """Bias at scale x_scale * w_scale[co], rounded half to even (ValueError when it leaves int32)."""
    q = np.rint(np.asarray(b, np.float64) / (np.float64(x_scale) * w_scale.astype(np.float64)))
    if np.abs(q).max(initial=0) >= 2**31:
        raise ValueError("bias does not fit int32 at scale x_scale * w_scale (activation scale too small)")
    return q.astype(np.int32)


def quantize_sparse_convs(model, ranges: Ranges, keep_fp32: set[str] | frozenset[str] = frozenset()) -> tuple:
    """(new model, per-layer report) with every SparseConvolution not in ``keep_fp32`` in int8."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    sparse = [n for n in g.node if n.op_type == "SparseConvolution"]
    unknown = set(keep_fp32) - {n.name for n in g.node}
    if unknown:
        raise ValueError(f"keep_fp32: no node named {sorted(unknown)} in the graph")
    int8_nodes = {n.name for n in sparse if n.name not in keep_fp32}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}

    new_nodes, new_inits, report = [], [], []
    int8_of: dict[str, str] = {}  # float tensor -> its int8 twin inside the chain
    zp = "quant.int8_zero_point"
    new_inits.append(numpy_helper.from_array(np.array(0, np.int8), zp))

    def scale_init(name: str, v) -> str:
        new_inits.append(numpy_helper.from_array(np.asarray(v, np.float32), name))
        return name

    for n in g.node:
        if n.name not in int8_nodes:
            new_nodes.append(n)
            continue
        x, idx, wname = n.input[0], n.input[1], n.input[2]
        if wname not in inits:
            raise ValueError(f"{n.name}: weight {wname!r} is not a constant initializer; cannot quantise it")
        y = n.output[0]
        xs, ys = activation_scale(ranges, x), activation_scale(ranges, y)
        w = numpy_helper.to_array(inits[wname])
        wq, ws = weight_per_channel(w)
        prefix = n.name
        x_scale = scale_init(f"{prefix}.x_scale", xs)
        if x not in int8_of:  # enters the chain here
            xq = f"{x}.int8"
            new_nodes.append(helper.make_node("QuantizeLinear", [x, x_scale, zp], [xq], name=f"{prefix}.quantize"))
            int8_of[x] = xq
        new_inits.append(numpy_helper.from_array(wq, f"{prefix}.weight_int8"))
        ins = [int8_of[x], idx, x_scale, f"{prefix}.weight_int8", scale_init(f"{prefix}.w_scale", ws),
               scale_init(f"{prefix}.y_scale", ys)]
        if len(n.input) > 3 and n.input[3]:
            b = numpy_helper.to_array(inits[n.input[3]])
            new_inits.append(numpy_helper.from_array(bias_int32(b, xs, ws), f"{prefix}.bias_int32"))
            ins.append(f"{prefix}.bias_int32")
        yq = f"{y}.int8"
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        new_nodes.append(SPARSE_CONVOLUTION_INT8.make_node(ins, [yq, n.output[1]], f"{prefix}.int8", **attrs))
        int8_of[y] = yq
        if y in graph_outputs or any(c.name not in int8_nodes for c in consumers.get(y, [])):
            new_nodes.append(helper.make_node("DequantizeLinear", [yq, f"{prefix}.y_scale", zp], [y],
                                              name=f"{prefix}.dequantize"))
        report.append({"layer": n.name, "x_scale": float(xs), "y_scale": float(ys),
                       "weight_scale_range": [float(ws.min()), float(ws.max())],
                       "weight_bytes_fp32": int(w.nbytes), "weight_bytes_int8": int(wq.nbytes)})

    used = {i for nd in new_nodes for i in nd.input}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(new_nodes)
    kept = [i for i in g.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + [i for i in new_inits if i.name in used])
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in out.opset_import):
        raise ValueError("per-channel QuantizeLinear/DequantizeLinear need opset >= 13")
    return out, report
