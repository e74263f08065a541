"""Float16 form of an exported student for strongly typed TensorRT networks (TensorRT 10/11: the
graph's tensor types decide each layer's precision; `--fp16` builder flags are deprecated, and gone in
TensorRT 11).

The network from the first sparse convolution to the redundancy elimination runs in float16: a Cast
after the VFE, float16 features through every `SparseConvolution` (its weights and bias stay float32,
as the plugins take them; they accumulate in float32), float16 BEV scatter, backbone and head (their
weights converted), and Casts back to float32 in front of `IoUAwareRedundancyElimination`, whose
outputs (the graph's) stay float32. The graph's inputs, the VFE and the post-processing keep float32."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: ops of the float16 region whose float outputs follow their inputs' type
_POLYMORPHIC = {"Conv", "ConvTranspose", "Relu", "Concat", "Transpose", "Reshape", "ScatterND", "Gather", "Add",
                "Mul", "Sigmoid", "MaxPool", "Identity", "Squeeze", "Unsqueeze", "Slice", "Clip"}


class Fp16Error(ValueError):
    pass


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float16 form of ``model`` (a copy; see the module docstring)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    nodes = list(g.node)
    sparse = [n for n in nodes if n.op_type == "SparseConvolution"]
    re_nodes = [n for n in nodes if n.op_type == "IoUAwareRedundancyElimination"]
    if not sparse or len(re_nodes) != 1:
        raise Fp16Error("float16 export needs a graph with SparseConvolution nodes and one "
                        "IoUAwareRedundancyElimination node (an exported sparse student)")
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in nodes for o in n.output}
    x0 = sparse[0].input[0]
    half = {f"{x0}.fp16"}
    out_nodes = []
    converted: set[str] = set()

    def half_initializer(name: str) -> None:
        if name in converted or name not in inits:
            return
        arr = numpy_helper.to_array(inits[name])
        if arr.dtype == np.float32:
            if np.abs(arr).max(initial=0) > 65504:
                raise Fp16Error(f"initializer {name!r} exceeds the float16 range (max |v| {np.abs(arr).max():.3g})")
            inits[name].CopyFrom(numpy_helper.from_array(arr.astype(np.float16), name))
        converted.add(name)

    for n in nodes:
        if n is sparse[0]:
            out_nodes.append(helper.make_node("Cast", [x0], [f"{x0}.fp16"], name="fp16.cast_in", to=TensorProto.FLOAT16))
        if n is re_nodes[0]:
            for j, name in enumerate(n.input):
                if name in half:
                    out_nodes.append(helper.make_node("Cast", [name], [f"{name}.fp32"], name=f"fp16.cast_out{j}",
                                                      to=TensorProto.FLOAT))
                    n.input[j] = f"{name}.fp32"
            out_nodes.append(n)
            continue
        if n is sparse[0]:
            n.input[0] = f"{x0}.fp16"
        if n.op_type == "SparseConvolution":
            if n.input[0] not in half:
                raise Fp16Error(f"{n.name}: its features do not come from the float16 region")
            half.add(n.output[0])
        elif any(i in half for i in n.input):
            if n.op_type not in _POLYMORPHIC:
                raise Fp16Error(f"{n.name}: op {n.op_type} inside the float16 region is not handled")
            for i in n.input:
                if i in half or not i:
                    continue
                half_initializer(i)
                p = producer.get(i)
                if p is not None and p.op_type == "ConstantOfShape":
                    for a in p.attribute:
                        if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                            a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
            half.update(o for o in n.output if o)
        out_nodes.append(n)
    if not re_nodes[0].input or not any(i.endswith(".fp32") for i in re_nodes[0].input):
        raise Fp16Error("the float16 region does not reach the redundancy elimination")
    del g.node[:]
    g.node.extend(out_nodes)
    del g.value_info[:]  # float32 shapes of the old graph; ONNX Runtime and TensorRT infer the types
    onnx.checker.check_model(m)
    return m
