"""One specification per custom op (clean_deploy/op_spec.py): the C++ header the ORT ops and the
TensorRT plugins read is generated from it and up to date; nodes are built only through it (no other
make_node of a clean_deploy op in the package); it refuses bad attributes with the op, node and
attribute named; the ONNX Runtime ops apply its defaults (an omitted optional attribute gives the
same result as the spec's default, a missing required one is refused naming it)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from clean_deploy import op_spec
from clean_deploy.op_spec import (IOU_AWARE_RE, SPARSE_CONV_INDEX_PAIRS, SPARSE_CONVOLUTION, SPARSE_CONVOLUTION_INT8,
                                  SPARSE_CONVOLUTION_TRT, cpp_header)

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "include" / "clean_deploy" / "op_spec.h"


def test_header_is_generated_from_the_spec():
    assert HEADER.read_text() == cpp_header(), "stale: run `python -m clean_deploy.op_spec > " + str(HEADER.relative_to(ROOT)) + "`"


def test_nodes_of_our_ops_are_built_only_through_the_spec():
    ops = {s.op_type for s in op_spec.OPS}
    pattern = re.compile(r"make_node\(\s*[\"'](" + "|".join(ops) + r")[\"']")
    offenders = [str(p.relative_to(ROOT)) for d in ("clean_deploy", "plugins", "benchmarks")
                 for p in (ROOT / d).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_readers_follow_the_header():
    """The C++ readers name no attribute of these ops by a string literal of their own: every
    attribute is read, written and declared through op_spec.h (only the TensorRT serialisation field
    num_inputs, no ONNX attribute, is spelled out)."""
    names = {a.name for s in op_spec.OPS for a in s.attrs}
    files = [ROOT / "csrc/ort/sparse_conv_op.cpp", ROOT / "csrc/ort/redundancy_op.cpp",
             ROOT / "plugins/src/sparse_conv_plugins.cpp", ROOT / "plugins/src/redundancy_plugin.cpp"]
    for f in files:
        literals = set(re.findall(r'(?:_attr|\.ints|\.int1|\.floats|\.float1|\.str|add_ints|add_floats|add_string|declare)'
                                  r'\(\s*(?:info,\s*)?"([a-z_]+)"', f.read_text()))
        assert literals <= {"num_inputs"}, (f.name, literals)
        assert not (literals & names)
    # the two conv ops share one attribute reader (read_conv_attributes)
    assert SPARSE_CONVOLUTION_INT8.attrs == SPARSE_CONVOLUTION.attrs


def test_make_node_checks_attributes():
    node = SPARSE_CONVOLUTION.make_node(["f", "i", "w"], ["of", "oi"], "c0", kernel_size=(3, 3, 3), subm=1,
                                        spatial_shape=[41, 1600, 1408], stride=np.array([1, 1, 1]))
    assert node.domain == "clean_deploy" and node.op_type == "SparseConvolution"
    assert {a.name for a in node.attribute} == {"kernel_size", "subm", "spatial_shape", "stride"}
    with pytest.raises(ValueError, match=r"SparseConvolution node 'c0': attribute 'kernel_size' \(ints\) is required"):
        SPARSE_CONVOLUTION.make_node(["f", "i", "w"], ["of", "oi"], "c0", subm=1, spatial_shape=[1, 2, 3])
    with pytest.raises(ValueError, match=r"unknown attributes \['max_batch'\]"):
        SPARSE_CONVOLUTION.make_node(["f", "i", "w"], ["of", "oi"], "c0", kernel_size=[3, 3, 3], subm=1,
                                     spatial_shape=[1, 2, 3], max_batch=1)
    with pytest.raises(ValueError, match=r"attribute 'stride' needs 3 values, got 2"):
        SPARSE_CONVOLUTION.make_node(["f", "i", "w"], ["of", "oi"], "c0", kernel_size=[3, 3, 3], subm=1,
                                     spatial_shape=[1, 2, 3], stride=[1, 1])
    with pytest.raises(ValueError, match=r"'activation' must be one of \['none', 'relu'\], got 'gelu'"):
        SPARSE_CONVOLUTION.make_node(["f", "i", "w"], ["of", "oi"], "c0", kernel_size=[3, 3, 3], subm=1,
                                     spatial_shape=[1, 2, 3], activation="gelu")
    with pytest.raises(ValueError, match=r"2 inputs, expected"):
        SPARSE_CONVOLUTION.make_node(["f", "i"], ["of", "oi"], "c0", kernel_size=[3, 3, 3], subm=1, spatial_shape=[1, 2, 3])
    # the TensorRT form takes the output bounds, and a regular conv's size tensor output
    SPARSE_CONVOLUTION_TRT.make_node(["f", "i", "w"], ["of", "oi", "n"], "c1", kernel_size=[3, 3, 3], subm=0,
                                     spatial_shape=[1, 2, 3], max_batch=1, max_out_rows=10, opt_rows=5)
    SPARSE_CONV_INDEX_PAIRS.make_node(["i"], ["nbr"], "p", kernel_size=[3, 3, 3], subm=1, spatial_shape=[1, 2, 3])
    # per-class lists take their length from num_classes; head-specific attributes only where they apply
    re_attrs = dict(head_type="center", num_classes=3, pc_range=[0, -40, -3, 70.4, 40, 1], cell_size=[0.8, 0.8],
                    beta=[0.5] * 3, min_iou=[0.1] * 3, nms_thresh=[0.01] * 3, score_thresh=0.1,
                    cross_class_thresh=0.3, pre_max=100, max_output=50)
    IOU_AWARE_RE.make_node(["hm", "reg", "iou"], ["b", "s", "l", "v"], "re", **re_attrs)
    with pytest.raises(ValueError, match=r"'beta' needs 3 values, got 2"):
        IOU_AWARE_RE.make_node(["hm", "reg", "iou"], ["b", "s", "l", "v"], "re", **{**re_attrs, "beta": [0.5, 0.5]})
    with pytest.raises(ValueError, match=r"'pc_range' \(floats\) is required"):
        IOU_AWARE_RE.make_node(["hm", "reg", "iou"], ["b", "s", "l", "v"], "re",
                               **{k: v for k, v in re_attrs.items() if k != "pc_range"})
    anchor = {k: v for k, v in re_attrs.items() if k not in ("pc_range", "cell_size")}
    IOU_AWARE_RE.make_node(["cls", "box", "dir", "iou", "anchors"], ["b", "s", "l", "v"], "re",
                           **{**anchor, "head_type": "anchor"})


def test_ort_op_applies_the_spec_defaults():
    """A node without the optional attributes runs exactly like one with the spec's defaults written
    out; one without a required attribute is refused naming it."""
    from onnx import TensorProto, helper, numpy_helper

    from clean_deploy.runtime import ort_ops

    rng = np.random.default_rng(0)
    idx = np.unique(rng.integers(0, 8, (60, 4)) * [0, 1, 1, 1], axis=0).astype(np.int32)
    feats = rng.standard_normal((len(idx), 4)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3, 4)).astype(np.float32)

    def model(**attrs):
        node = SPARSE_CONVOLUTION.make_node(["features", "indices", "w"], ["of", "oi"], "c", **attrs)
        graph = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4]),
                          helper.make_tensor_value_info("indices", TensorProto.INT32, ["N", 4])],
            [helper.make_tensor_value_info("of", TensorProto.FLOAT, ["M", 5]),
             helper.make_tensor_value_info("oi", TensorProto.INT32, ["M", 4])],
            initializer=[numpy_helper.from_array(w, "w")])
        return ort_ops._finish(graph, 17)

    base = dict(kernel_size=[3, 3, 3], subm=0, spatial_shape=[8, 8, 8])
    defaults = {a.name: list(a.default) if a.kind == "ints" else a.default
                for a in SPARSE_CONVOLUTION.attrs if a.default is not None}
    assert defaults == {"stride": [1, 1, 1], "padding": [0, 0, 0], "dilation": [1, 1, 1], "activation": "none"}
    run = lambda m: ort_ops.sparse_conv_session(m).run(None, {"features": feats, "indices": idx})  # noqa: E731
    a, b = run(model(**base)), run(model(**base, **defaults))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and len(a[1]) > 0
    broken = model(**base)
    del broken.graph.node[0].attribute[[x.name for x in broken.graph.node[0].attribute].index("spatial_shape")]
    with pytest.raises(Exception, match=r"attribute 'spatial_shape' \(ints\[3\]\) is required"):
        run(broken)
