"""ONNX Runtime with clean_deploy's custom ops (docs/custom_ops.md).

The ops live in ``libclean_deploy_ort.so``, built from ``csrc/`` by ``bash scripts/build_csrc.sh``
(part of ``make setup``). This module finds the library, makes session options with it registered,
and builds/runs ``clean_deploy::SparseConvolution`` graphs (one node or a chain) for tests and
benchmarks::

    out_feats, out_idx = run_sparse_conv(feats, idx, weight, bias, spatial_shape=(41, 1600, 1408),
                                         stride=2, padding=1, threads=2)
"""
from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from clean_deploy.op_spec import DOMAIN, SPARSE_CONVOLUTION, SPARSE_CONVOLUTION_INT8

__all__ = [
    "DOMAIN",
    "LIBRARY_ENV",
    "BUILD_COMMAND",
    "library_path",
    "session_options",
    "SparseConvSpec",
    "make_sparse_conv_model",
    "sparse_conv_session",
    "run_sparse_conv",
    "rulebook_pair_counts",
    "gemm_isa",
    "int8_isa",
    "rulebook_cache_stats",
    "make_sparse_conv_int8_model",
]

LIBRARY_NAME = "libclean_deploy_ort.so"
#: environment variable that points at a library built elsewhere
LIBRARY_ENV = "CLEAN_DEPLOY_ORT_LIB"
BUILD_COMMAND = "bash scripts/build_csrc.sh"


def library_path() -> Path:
    """Path of ``libclean_deploy_ort.so``: ``$CLEAN_DEPLOY_ORT_LIB``, else the installed package's
    ``clean_deploy/native/lib/`` (wheels), else the checkout's ``build/lib/``
    (:func:`clean_deploy.native.find_library`). Raises FileNotFoundError saying how to build it."""
    from clean_deploy.native import find_library

    return find_library(LIBRARY_NAME, LIBRARY_ENV, "clean_deploy's ONNX Runtime custom-op library")


def session_options(threads: int | None = None, memory_arena: bool = True, allow_spinning: bool = False):
    """``onnxruntime.SessionOptions`` with the clean_deploy ops registered.

    ``threads``: intra-op threads (the sparse conv kernels run on ORT's intra-op pool); None keeps
    ORT's default (one per core). ``memory_arena=False`` makes ORT free tensors to the system
    allocator (what memory measurements need; the arena is faster). ``allow_spinning`` (ORT's
    default is on; ours off): idle pool threads busy-wait for the next op. Between frames they then
    take the cores from the Python pre-processing and from any other work on the machine. CLEAN
    student, 2 threads on 2 cores, p50 per frame: idle machine 27-31 ms without spinning vs 30-37 ms
    with (3 alternating runs); with other work on the cores 46 vs 67 ms. Turn it on only when
    the pool's cores are reserved for ONNX Runtime.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = bool(memory_arena)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    so.register_custom_ops_library(str(library_path()))
    if threads is not None:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    return so


def _triple(v, name: str) -> list[int]:
    t = [int(v)] * 3 if np.isscalar(v) else [int(x) for x in v]
    if len(t) != 3:
        raise ValueError(f"{name} needs 1 or 3 values (z, y, x), got {v!r}")
    return t


@dataclass
class SparseConvSpec:
    """One SparseConvolution layer; ``weight`` in spconv layout [Cout, kD, kH, kW, Cin].

    ``spatial_shape`` (input D, H, W) may be left None for all but the first layer of a chain.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    dilation: int | Sequence[int] = 1
    subm: bool = False
    activation: str = "none"
    spatial_shape: Sequence[int] | None = None
    name: str = field(default="")

    @property
    def kernel_size(self) -> list[int]:
        return [int(k) for k in np.shape(self.weight)[1:4]]

    def out_spatial_shape(self, in_shape: Sequence[int]) -> list[int]:
        """Output D, H, W (docs/custom_ops.md): the input's for subm, else the conv formula."""
        if self.subm:
            return [int(s) for s in in_shape]
        k, s = self.kernel_size, _triple(self.stride, "stride")
        p, d = _triple(self.padding, "padding"), _triple(self.dilation, "dilation")
        return [(int(i) + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a, i in enumerate(in_shape)]


def _finish(graph, opset: int):
    """A checked model of ``graph`` with the standard and clean_deploy opsets, readable by every ORT >= 1.16."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
                              producer_name="clean_deploy")
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model


def make_sparse_conv_model(layers: SparseConvSpec | Sequence[SparseConvSpec], opset: int = 17):
    """ONNX model running ``layers`` in a chain: inputs ``features`` [N, Cin] float32 and
    ``indices`` [N, 4] int32; outputs ``out_features`` and ``out_indices`` of the last layer.
    Weights and biases are initializers (as in an exported, BN-folded student)."""
    from onnx import TensorProto, helper, numpy_helper

    layers = [layers] if isinstance(layers, SparseConvSpec) else list(layers)
    if not layers:
        raise ValueError("make_sparse_conv_model needs at least one layer")
    if layers[0].spatial_shape is None:
        raise ValueError("the first layer needs spatial_shape (input D, H, W)")
    nodes, inits = [], []
    feats, idx = "features", "indices"
    shape = [int(s) for s in layers[0].spatial_shape]
    for i, spec in enumerate(layers):
        w = np.ascontiguousarray(spec.weight, dtype=np.float32)
        if w.ndim != 5:
            raise ValueError(f"layer {i}: weight must be [Cout, kD, kH, kW, Cin], got shape {w.shape}")
        if spec.spatial_shape is not None:
            shape = [int(s) for s in spec.spatial_shape]
        last = i == len(layers) - 1
        name = spec.name or f"sparse_conv{i}"
        inputs = [feats, idx, f"{name}.weight"]
        inits.append(numpy_helper.from_array(w, f"{name}.weight"))
        if spec.bias is not None:
            inputs.append(f"{name}.bias")
            inits.append(numpy_helper.from_array(np.ascontiguousarray(spec.bias, dtype=np.float32), f"{name}.bias"))
        outs = ["out_features", "out_indices"] if last else [f"{name}.features", f"{name}.indices"]
        nodes.append(SPARSE_CONVOLUTION.make_node(
            inputs, outs, name,
            kernel_size=spec.kernel_size, stride=_triple(spec.stride, "stride"),
            padding=_triple(spec.padding, "padding"), dilation=_triple(spec.dilation, "dilation"),
            subm=int(bool(spec.subm)), spatial_shape=shape, activation=str(spec.activation)))
        shape = spec.out_spatial_shape(shape)
        feats, idx = outs
    cout = int(np.shape(layers[-1].weight)[0])
    graph = helper.make_graph(
        nodes, "clean_deploy_sparse_conv",
        # Cin left symbolic so that the op itself checks it against the weight (clearer message)
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", "Cin"]),
         helper.make_tensor_value_info("indices", TensorProto.INT32, ["N", 4])],
        [helper.make_tensor_value_info("out_features", TensorProto.FLOAT, ["M", cout]),
         helper.make_tensor_value_info("out_indices", TensorProto.INT32, ["M", 4])],
        initializer=inits)
    return _finish(graph, opset)


def sparse_conv_session(model, threads: int | None = 1):
    """``onnxruntime.InferenceSession`` (CPU) for a model from :func:`make_sparse_conv_model`."""
    import onnxruntime as ort

    data = model if isinstance(model, (bytes, str, os.PathLike)) else model.SerializeToString()
    return ort.InferenceSession(data, sess_options=session_options(threads), providers=["CPUExecutionProvider"])


def run_sparse_conv(features, indices, weight, bias=None, *, spatial_shape: Sequence[int], stride=1, padding=0,
                    dilation=1, subm: bool = False, activation: str = "none",
                    threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Run one SparseConvolution through ONNX Runtime -> (out_features [M, Cout], out_indices [M, 4]).

    Accepts numpy arrays or torch tensors (features float32 [N, Cin], indices int32 [N, 4] as
    (batch, z, y, x), weight [Cout, kD, kH, kW, Cin], bias [Cout] or None).
    """
    def arr(x, dtype):
        if x is None:
            return None
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.ascontiguousarray(x, dtype=dtype)

    spec = SparseConvSpec(arr(weight, np.float32), arr(bias, np.float32), stride, padding, dilation, subm, activation,
                          spatial_shape)
    sess = sparse_conv_session(make_sparse_conv_model(spec), threads)
    out_f, out_i = sess.run(None, {"features": arr(features, np.float32), "indices": arr(indices, np.int32)})
    return out_f, out_i


@functools.lru_cache(maxsize=None)
def _clib() -> ctypes.CDLL:
    """The library's plain C helpers (csrc/ort/c_api.cpp); loading needs no ONNX Runtime."""
    lib = ctypes.CDLL(str(library_path()))
    lib.clean_deploy_rulebook_pairs.restype = ctypes.c_int
    lib.clean_deploy_rulebook_pairs.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.clean_deploy_gemm_isa.restype = ctypes.c_char_p
    lib.clean_deploy_gemm_isa.argtypes = []
    lib.clean_deploy_int8_isa.restype = ctypes.c_char_p
    lib.clean_deploy_int8_isa.argtypes = []
    lib.clean_deploy_rulebook_cache_stats.restype = None
    lib.clean_deploy_rulebook_cache_stats.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]
    return lib


def rulebook_pair_counts(indices, kernel_size, *, spatial_shape: Sequence[int], stride=1, padding=0, dilation=1,
                         subm: bool = False) -> tuple[np.ndarray, int]:
    """The C++ rulebook's pairs per kernel offset (K,) int64 and its number of output sites."""
    idx = np.ascontiguousarray(indices.detach().cpu().numpy() if hasattr(indices, "detach") else indices,
                               dtype=np.int32).reshape(-1, 4)
    k = _triple(kernel_size, "kernel_size")
    geom = np.array(k + _triple(stride, "stride") + _triple(padding, "padding") + _triple(dilation, "dilation")
                    + _triple(spatial_shape, "spatial_shape"), dtype=np.int64)
    counts = np.zeros(k[0] * k[1] * k[2], dtype=np.int64)
    num_out = ctypes.c_int64(0)
    err = ctypes.create_string_buffer(1024)
    rc = _clib().clean_deploy_rulebook_pairs(idx.ctypes.data, len(idx), geom.ctypes.data, int(bool(subm)),
                                             ctypes.byref(num_out), counts.ctypes.data, err, len(err))
    if rc != 0:
        raise ValueError(f"clean_deploy rulebook: {err.value.decode(errors='replace')}")
    return counts, int(num_out.value)


def gemm_isa() -> str:
    """The SGEMM micro-kernel the library uses on this CPU: "avx512", "avx2" or "generic"."""
    return _clib().clean_deploy_gemm_isa().decode()


def rulebook_cache_stats() -> tuple[int, int]:
    """(hits, misses) of the ops' submanifold rulebook cache in this process (csrc/ort/rulebook_cache.h)."""
    hits, misses = ctypes.c_int64(0), ctypes.c_int64(0)
    _clib().clean_deploy_rulebook_cache_stats(ctypes.byref(hits), ctypes.byref(misses))
    return int(hits.value), int(misses.value)


def int8_isa() -> str:
    """The int8 micro-kernel of SparseConvolutionInt8 on this CPU: "avx512_vnni", "avx2" or "generic"."""
    return _clib().clean_deploy_int8_isa().decode()


def make_sparse_conv_int8_model(weight, w_scale, x_scale: float, y_scale: float, bias=None, *,
                                spatial_shape: Sequence[int], stride=1, padding=0, dilation=1, subm: bool = False,
                                activation: str = "none", opset: int = 17):
    """ONNX model of one ``clean_deploy::SparseConvolutionInt8`` node: inputs ``features`` [N, Cin]
    int8 and ``indices`` [N, 4] int32; weight int8 [Cout, kD, kH, kW, Cin], w_scale float32 [Cout],
    bias int32 [Cout] (or None) and the two scalar scales as initializers."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.ascontiguousarray(weight, dtype=np.int8)
    cout = int(w.shape[0])
    inits = [numpy_helper.from_array(np.asarray(x_scale, np.float32), "x_scale"),
             numpy_helper.from_array(w, "weight"),
             numpy_helper.from_array(np.ascontiguousarray(w_scale, np.float32), "w_scale"),
             numpy_helper.from_array(np.asarray(y_scale, np.float32), "y_scale")]
    inputs = ["features", "indices", "x_scale", "weight", "w_scale", "y_scale"]
    if bias is not None:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(bias, np.int32), "bias"))
        inputs.append("bias")
    node = SPARSE_CONVOLUTION_INT8.make_node(inputs, ["out_features", "out_indices"], "sparse_conv_int8",
                                             kernel_size=list(w.shape[1:4]), stride=_triple(stride, "stride"),
                                             padding=_triple(padding, "padding"),
                                             dilation=_triple(dilation, "dilation"), subm=int(bool(subm)),
                                             spatial_shape=[int(v) for v in spatial_shape], activation=str(activation))
    graph = helper.make_graph(
        [node], "clean_deploy_sparse_conv_int8",
        [helper.make_tensor_value_info("features", TensorProto.INT8, ["N", "Cin"]),
         helper.make_tensor_value_info("indices", TensorProto.INT32, ["N", 4])],
        [helper.make_tensor_value_info("out_features", TensorProto.INT8, ["M", cout]),
         helper.make_tensor_value_info("out_indices", TensorProto.INT32, ["M", 4])],
        initializer=inits)
    return _finish(graph, opset)
