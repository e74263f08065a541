"""The one specification of clean_deploy's custom ONNX ops (docs/custom_ops.md): each op's inputs,
outputs and attributes with their types, lengths and defaults.

Everything that writes or reads these nodes follows it:
  - Python builds every node through :meth:`OpSpec.make_node` (the exporter, the INT8 quantiser,
    the test-model builders of ``runtime/ort_ops.py``, ``plugins/prepare_onnx.py``), which refuses
    unknown or missing attributes and values of the wrong type or length;
  - the C++ readers (the ONNX Runtime ops in ``csrc/ort``, the TensorRT plugins' field parsing,
    serialisation and ``getFieldNames`` in ``plugins/src``) take names, lengths and defaults from
    ``csrc/include/clean_deploy/op_spec.h``, which is generated from this module:

        python -m clean_deploy.op_spec > csrc/include/clean_deploy/op_spec.h

    (``tests/test_op_spec.py`` fails when the header is stale).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

DOMAIN = "clean_deploy"
KINDS = ("int", "ints", "float", "floats", "string")


@dataclass(frozen=True)
class Attr:
    """One attribute. ``count``: fixed length of an ints/floats value, the name of the int attribute
    that gives it (per-class lists), or None (any length). ``default`` None: required (where
    ``when`` holds). ``when``: (attribute, value) under which the attribute applies."""

    name: str
    kind: str
    count: int | str | None = None
    default: Any = None
    choices: tuple = ()
    when: tuple[str, str] | None = None
    doc: str = ""
    #: may be absent although it has no default (the reader then infers it)
    optional: bool = False

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional


@dataclass(frozen=True)
class OpSpec:
    #: the C++ namespace of its constants in op_spec.h
    cpp: str
    op_type: str
    inputs: tuple[str, ...]
    #: how many trailing inputs may be omitted
    optional_inputs: int
    outputs: tuple[str, ...]
    attrs: tuple[Attr, ...]
    doc: str = ""
    #: allowed numbers of outputs (empty: exactly len(outputs))
    output_counts: tuple[int, ...] = ()

    def check_attributes(self, attrs: dict[str, Any], where: str = "") -> dict[str, Any]:
        """``attrs`` validated and normalised (ints/floats as lists of Python numbers); raises
        ValueError naming the op, the node and the attribute."""
        who = f"{self.op_type}{f' node {where!r}' if where else ''}"
        # onnx.helper.get_attribute_value gives strings as bytes
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        known = {a.name for a in self.attrs}
        unknown = sorted(set(attrs) - known)
        if unknown:
            raise ValueError(f"{who}: unknown attributes {unknown} (known: {sorted(known)})")
        out: dict[str, Any] = {}
        for a in self.attrs:
            applies = a.when is None or attrs.get(a.when[0]) == a.when[1]
            if a.name not in attrs:
                if a.required and applies:
                    raise ValueError(f"{who}: attribute {a.name!r} ({a.kind}) is required")
                continue
            v = attrs[a.name]
            if a.kind == "int":
                out[a.name] = _as_int(v, who, a.name)
            elif a.kind == "float":
                out[a.name] = float(v)
            elif a.kind == "string":
                if not isinstance(v, str):
                    raise ValueError(f"{who}: attribute {a.name!r} must be a string, got {type(v).__name__}")
                out[a.name] = v
            else:
                seq = [_as_int(x, who, a.name) if a.kind == "ints" else float(x) for x in v]
                n = attrs.get(a.count) if isinstance(a.count, str) else a.count
                if n is not None and len(seq) != int(n):
                    raise ValueError(f"{who}: attribute {a.name!r} needs {int(n)} values, got {len(seq)}")
                out[a.name] = seq
            if a.choices and out[a.name] not in a.choices:
                raise ValueError(f"{who}: attribute {a.name!r} must be one of {list(a.choices)}, got {out[a.name]!r}")
        return out

    def make_node(self, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs):
        """The ONNX node of this op (domain ``clean_deploy``) with checked attributes."""
        from onnx import helper

        n_in = len(inputs)
        if not len(self.inputs) - self.optional_inputs <= n_in <= len(self.inputs):
            raise ValueError(f"{self.op_type} node {name!r}: {n_in} inputs, expected {list(self.inputs)} "
                             f"(the last {self.optional_inputs} optional)")
        if len(outputs) not in (self.output_counts or (len(self.outputs),)):
            raise ValueError(f"{self.op_type} node {name!r}: {len(outputs)} outputs, expected {list(self.outputs)}"
                             + (f" ({' or '.join(map(str, self.output_counts))} of them)" if self.output_counts else ""))
        return helper.make_node(self.op_type, list(inputs), list(outputs), name=name, domain=DOMAIN,
                                **self.check_attributes(attrs, name))


def _as_int(v, who: str, name: str) -> int:
    if isinstance(v, bool) or int(v) != v:
        raise ValueError(f"{who}: attribute {name!r} needs integers, got {v!r}")
    return int(v)


# ---------------------------------------------------------------------------------- the ops
_GEOMETRY = (
    Attr("kernel_size", "ints", 3, doc="kD, kH, kW"),
    Attr("stride", "ints", 3, (1, 1, 1)),
    Attr("padding", "ints", 3, (0, 0, 0)),
    Attr("dilation", "ints", 3, (1, 1, 1)),
    Attr("subm", "int", doc="1: submanifold (outputs are the input sites), 0: regular"),
    Attr("spatial_shape", "ints", 3, doc="input grid D, H, W"),
)
_ACTIVATION = Attr("activation", "string", None, "none", ("none", "relu"))
#: attributes plugins/prepare_onnx.py adds for the TensorRT plugins (output bounds)
_TRT_BOUNDS = (
    Attr("max_batch", "int", None, 0, doc="frames per engine call the build assumes (0: 1)"),
    Attr("max_out_rows", "int", None, 0, doc="cap of a regular conv's output rows (0: no cap)"),
    Attr("opt_rows", "int", None, 0, doc="size tensor's optimisation value (0: the cap)"),
)

SPARSE_CONVOLUTION = OpSpec(
    "sparse_convolution", "SparseConvolution", ("features", "indices", "weight", "bias"), 1, ("out_features", "out_indices"),
    _GEOMETRY + (_ACTIVATION,), "float32 (float16 in TensorRT) sparse 3D convolution, weight [Cout, kD, kH, kW, Cin]")
SPARSE_CONVOLUTION_INT8 = OpSpec(
    "sparse_convolution_int8", "SparseConvolutionInt8", ("features", "indices", "x_scale", "weight", "w_scale", "y_scale", "bias"), 1,
    ("out_features", "out_indices"), _GEOMETRY + (_ACTIVATION,),
    "int8 sparse 3D convolution: int8 features and per-channel weights, int32 bias, requantised output")
#: SparseConvolution as the TensorRT plugin reads it (after plugins/prepare_onnx.py, fused form)
SPARSE_CONVOLUTION_TRT = OpSpec(
    "sparse_convolution_trt", "SparseConvolution", ("features", "indices", "weight", "bias"), 1,
    ("out_features", "out_indices", "num_out"), _GEOMETRY + (_ACTIVATION,) + _TRT_BOUNDS,
    "fused TensorRT form (a regular conv adds the size tensor num_out)", output_counts=(2, 3))
SPARSE_CONV_INDEX_PAIRS = OpSpec(
    "sparse_conv_index_pairs", "SparseConvIndexPairs", ("indices",), 0, ("out_indices", "neighbors", "num_out"),
    _GEOMETRY + _TRT_BOUNDS, "TensorRT split form: rulebook of a conv (a subm conv has the one output neighbors)",
    output_counts=(1, 3))
SPARSE_CONV_GEMM = OpSpec(
    "sparse_conv_gemm", "SparseConvGemm", ("features", "neighbors", "weight", "bias"), 1, ("out_features",), (_ACTIVATION,),
    "TensorRT split form: gather-GEMM over a rulebook")

_ANCHOR, _CENTER = ("head_type", "anchor"), ("head_type", "center")
_RE_ATTRS = (
    Attr("head_type", "string", choices=("anchor", "center")),
    Attr("num_classes", "int"),
    Attr("code_sincos", "int", None, 0, when=_ANCHOR),
    Attr("use_dir", "int", None, 1, when=_ANCHOR),
    Attr("num_dir_bins", "int", None, 2, when=_ANCHOR),
    Attr("dir_offset", "float", None, 0.78539, when=_ANCHOR),
    Attr("dir_limit_offset", "float", None, 0.0, when=_ANCHOR),
    Attr("top_k", "int", None, 500, when=_CENTER),
    Attr("pc_range", "floats", 6, when=_CENTER),
    Attr("cell_size", "floats", 2, when=_CENTER),
    Attr("beta", "floats", "num_classes"),
    Attr("min_iou", "floats", "num_classes"),
    Attr("nms_thresh", "floats", "num_classes"),
    Attr("score_thresh", "float"),
    Attr("cross_class_thresh", "float"),
    Attr("pre_max", "int"),
    Attr("max_output", "int"),
)
_RE_IO = (("cls", "box", "dir", "iou", "anchors"), 3, ("boxes", "scores", "labels", "valid_count"))
IOU_AWARE_RE = OpSpec(
    "iou_aware_re", "IoUAwareRedundancyElimination", *_RE_IO, _RE_ATTRS,
    "decode of the dense head + IoU-aware redundancy elimination (head_type anchor: cls, box, dir, iou, "
    "anchors; center: hm, reg, iou)")
#: as the TensorRT plugin reads it (after plugins/prepare_onnx.py)
IOU_AWARE_RE_TRT = OpSpec(
    "iou_aware_re_trt", "IoUAwareRedundancyElimination", *_RE_IO,
    _RE_ATTRS + (Attr("present_inputs", "ints", 5, optional=True,
                      doc="which of the five input slots are present (absent: the first num_inputs)"),))

OPS: tuple[OpSpec, ...] = (SPARSE_CONVOLUTION, SPARSE_CONVOLUTION_INT8, SPARSE_CONVOLUTION_TRT,
                           SPARSE_CONV_INDEX_PAIRS, SPARSE_CONV_GEMM, IOU_AWARE_RE, IOU_AWARE_RE_TRT)


# ------------------------------------------------------------------------------ C++ header
_CPP_KIND = {"int": "kInt", "ints": "kInts", "float": "kFloat", "floats": "kFloats", "string": "kString"}


def _cpp_default(a: Attr) -> str:
    if a.default is None:
        return "{}, 0.0, nullptr"
    if a.kind == "string":
        return f'{{}}, 0.0, "{a.default}"'
    if a.kind == "float":
        return f"{{}}, {float(a.default)!r}, nullptr"
    if a.kind == "floats":
        raise ValueError(f"{a.name}: float-list defaults are not supported in the header")
    vals = list(a.default) if a.kind == "ints" else [int(a.default)]
    return "{" + ", ".join(str(int(v)) for v in vals) + "}, 0.0, nullptr"


def cpp_header() -> str:
    """csrc/include/clean_deploy/op_spec.h: the attributes of every op as constexpr values."""
    lines = [
        "// GENERATED by `python -m clean_deploy.op_spec` from clean_deploy/op_spec.py: do not edit.",
        "// The attributes of clean_deploy's custom ops (names, kinds, lengths, defaults) as the ONNX",
        "// Runtime ops (csrc/ort) and the TensorRT plugins (plugins/src) read them.",
        "#pragma once",
        "",
        "#include <cstdint>",
        "",
        "namespace clean_deploy {",
        "namespace op_spec {",
        "",
        "enum class Kind { kInt, kInts, kFloat, kFloats, kString };",
        "",
        "struct Attr {",
        "  const char* name;",
        "  Kind kind;",
        "  int count;       // fixed length of ints/floats; -1: given by another attribute or free",
        "  bool required;   // no default (where the attribute applies)",
        "  int64_t ints[6]; // default of int/ints (count values; int: ints[0])",
        "  double real;     // default of float",
        "  const char* str; // default of string",
        "};",
        "",
        f'inline constexpr const char* kDomain = "{DOMAIN}";',
    ]
    seen: set[str] = set()
    for spec in OPS:
        ns = spec.cpp
        if ns in seen:
            raise ValueError(f"two specs map to namespace {ns}")
        seen.add(ns)
        lines += ["", f"// {spec.op_type}: {spec.doc}" if spec.doc else f"// {spec.op_type}", f"namespace {ns} {{",
                  f'inline constexpr const char* kOpType = "{spec.op_type}";']
        for a in spec.attrs:
            count = a.count if isinstance(a.count, int) else (-1 if a.kind in ("ints", "floats") else 1)
            lines.append(f'inline constexpr Attr {a.name}{{"{a.name}", Kind::{_CPP_KIND[a.kind]}, {count}, '
                         f'{"true" if a.required else "false"}, {_cpp_default(a)}}};')
        lines.append(f"inline constexpr const Attr* kAttrs[] = {{{', '.join('&' + a.name for a in spec.attrs)}}};")
        lines.append(f"}}  // namespace {ns}")
    lines += ["", "}  // namespace op_spec", "}  // namespace clean_deploy", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(cpp_header())
