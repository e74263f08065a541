"""Weight-only int8 storage of the layers kept in float32 (``--kept-weights int8``).

A layer kept float32 (``keep_fp32``, chosen because its activations are sensitive to 8-bit
rounding) still computes in float32, but its weight initializer is stored as per-output-channel
symmetric int8 with a ``DequantizeLinear`` in front of the layer's weight input: the file shrinks
as if the layer were quantised, and only the weights carry rounding (at most half a step of
max|w[co]| / 127 per weight), not the activations. Checked on ONNX Runtime CPU (the graph runs
and gives the boxes of the float-kept model with the dequantised weights substituted: test). The
TensorRT target refuses it (the plugins take the sparse conv weights as constants)."""
from __future__ import annotations

import numpy as np

from clean_deploy.quantize.sparse_int8 import weight_per_channel

#: op type -> (input index of the weight, axis of its output channels)
WEIGHT_INPUTS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "SparseConvolution": (2, 0)}


def int8_weights(model, layers) -> tuple[object, list[dict]]:
    """(model, report): the float weight initializer of every node named in ``layers`` (Conv,
    ConvTranspose or SparseConvolution) stored as int8 + per-channel float32 scale behind a
    ``DequantizeLinear``. ValueError for an unknown node, another op type, a weight that is no
    float32 initializer, or a grouped ConvTranspose (whose output channels span two axes)."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    if layers and not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise ValueError("kept-weights: per-channel DequantizeLinear needs ONNX opset >= 13")
    nodes = {n.name: n for n in g.node}
    inits = {i.name: i for i in g.initializer}
    users: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    report, new_nodes = [], []
    for name in layers:
        n = nodes.get(name)
        if n is None:
            raise ValueError(f"kept-weights: no node named {name!r} in the graph")
        if n.op_type not in WEIGHT_INPUTS:
            raise ValueError(f"kept-weights: node {name!r} is a {n.op_type}; int8 weight storage covers "
                             f"{', '.join(WEIGHT_INPUTS)}")
        idx, axis = WEIGHT_INPUTS[n.op_type]
        wname = n.input[idx]
        init = inits.get(wname)
        if init is None or init.data_type != TensorProto.FLOAT:
            raise ValueError(f"kept-weights: the weight {wname!r} of node {name!r} is not a float32 initializer")
        if n.op_type == "ConvTranspose" and any(a.name == "group" and a.i != 1 for a in n.attribute):
            raise ValueError(f"kept-weights: node {name!r} is a grouped ConvTranspose (not supported)")
        w = numpy_helper.to_array(init)
        w_c = np.moveaxis(w, axis, 0)  # output channels first
        q_c, scale = weight_per_channel(w_c)
        q = np.ascontiguousarray(np.moveaxis(q_c, 0, axis))
        base = f"{name}.weight_w8"  # per node: two kept layers sharing one weight get one DQ each
        g.initializer.extend([numpy_helper.from_array(q, f"{base}_q"),
                              numpy_helper.from_array(scale, f"{base}_scale"),
                              numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{base}_zero")])
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zero"],
                                          [f"{base}_dq"], name=f"{name}_weight_dq", axis=axis))
        n.input[idx] = f"{base}_dq"
        users[wname] -= 1
        if users[wname] == 0:  # the float copy is gone from the file
            g.initializer.remove(init)
        err = np.abs(q_c.astype(np.float32) * scale.reshape(-1, *([1] * (w.ndim - 1))) - w_c)
        report.append({"layer": name, "weight": wname, "max_abs_error": float(err.max(initial=0.0)),
                       "float32_bytes": int(w.nbytes), "int8_bytes": int(q.nbytes + scale.nbytes + scale.size)})
    # the DequantizeLinear nodes first: every one reads initializers only, so the order stays topological
    order = new_nodes + list(g.node)
    del g.node[:]
    g.node.extend(order)
    return model, report
