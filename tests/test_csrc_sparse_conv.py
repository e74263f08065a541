"""clean_deploy::SparseConvolution (csrc/ C++ kernels through ONNX Runtime) against spconv 2.3.8
(one thread) and a dense conv3d: output sites, features, rulebook pair counts, thread-count
determinism and error messages; plus the C++ kernel tests (csrc/tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clean_deploy.models.flops import rulebook_pairs
from clean_deploy.models.sparse import SparseBlock, spconv, use_sparse_backend
from clean_deploy.runtime import ort_ops

try:
    LIB = ort_ops.library_path()
except FileNotFoundError as err:  # pragma: no cover - CI builds the library in `make setup`
    pytest.skip(str(err), allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4


def _random_sites(seed: int, shape, batch: int = 1, density: float = 0.08) -> np.ndarray:
    """Unique (b, z, y, x) int32 rows in shuffled order (the op must not assume sorted inputs)."""
    g = np.random.default_rng(seed)
    rows = []
    for b in range(batch):
        mask = g.random(shape) < density
        z, y, x = np.nonzero(mask)
        rows.append(np.stack([np.full_like(z, b), z, y, x], 1))
    idx = np.concatenate(rows).astype(np.int32)
    return idx[g.permutation(len(idx))]


def _t3(v) -> list[int]:
    return [int(v)] * 3 if np.isscalar(v) else [int(x) for x in v]


def _sorted(feats: np.ndarray, idx: np.ndarray):
    order = np.lexsort(idx.T[::-1])
    return feats[order], idx[order]


def _dense_ref(feats, idx, weight, bias, shape, batch, stride, padding, dilation, subm, relu):
    """conv3d over the densified input (float64); for subm the kernel is centred and only input
    sites are kept. Returns the dense output [B, Cout, D', H', W']."""
    cin = weight.shape[4]
    dense = torch.zeros(batch, cin, *shape, dtype=torch.float64)
    t = torch.from_numpy(idx).long()
    dense[t[:, 0], :, t[:, 1], t[:, 2], t[:, 3]] = torch.from_numpy(feats).double()
    w = torch.from_numpy(weight).double().permute(0, 4, 1, 2, 3)
    b = torch.from_numpy(bias).double() if bias is not None else None
    if subm:
        pad = [(k // 2) * d for k, d in zip(weight.shape[1:4], dilation)]
        out = F.conv3d(dense, w, b, 1, pad, dilation)
    else:
        out = F.conv3d(dense, w, b, stride, padding, dilation)
    return out.clamp_min(0) if relu else out


def _spconv_ref(feats, idx, weight, shape, batch, stride, padding, dilation, subm):
    """spconv's output (bias-free; spconv's CPU conv has no fused bias) with one torch thread."""
    cout, *k, cin = weight.shape
    cls = spconv.SubMConv3d if subm else spconv.SparseConv3d
    conv = cls(cin, cout, k, stride=stride, padding=padding, dilation=dilation, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
    with torch.no_grad(), use_sparse_backend("spconv"), SparseBlock("cpu"):
        out = conv(spconv.SparseConvTensor(torch.from_numpy(feats), torch.from_numpy(idx), list(shape), batch))
    return out.features.numpy(), out.indices.numpy()


CASES = {
    # name: (shape, batch, cin, cout, kernel, stride, padding, dilation, subm, relu, bias)
    "subm3": ((10, 24, 20), 1, 16, 16, 3, 1, 1, 1, True, False, True),
    "conv3_s2_p1": ((11, 24, 20), 1, 16, 32, 3, 2, 1, 1, False, False, True),
    "conv3_s2_p011": ((11, 24, 20), 1, 32, 32, 3, 2, (0, 1, 1), 1, False, True, True),
    "z_collapse_311_s211": ((5, 20, 18), 1, 32, 64, (3, 1, 1), (2, 1, 1), 0, 1, False, False, True),
    "subm3_dilation2": ((10, 20, 20), 1, 8, 16, 3, 1, 2, 2, True, False, False),
    "batch2_subm_relu": ((8, 20, 16), 2, 16, 16, 3, 1, 1, 1, True, True, True),
    "batch2_conv_s2": ((9, 20, 16), 2, 16, 24, 3, 2, 1, 1, False, False, True),
    "odd_channels_5_to_7_relu": ((9, 17, 13), 2, 5, 7, 3, 2, 1, 1, False, True, True),
    "odd_channels_subm_5_to_7": ((9, 17, 13), 1, 5, 7, 3, 1, 1, 1, True, True, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_spconv_and_dense(name):
    shape, batch, cin, cout, k, s, p, d, subm, relu, with_bias = CASES[name]
    kk, s, p, d = _t3(k), _t3(s), _t3(p), _t3(d)
    seed = sum(map(ord, name))
    g = np.random.default_rng(seed)
    idx = _random_sites(seed, shape, batch)
    feats = g.standard_normal((len(idx), cin)).astype(np.float32)
    weight = (g.standard_normal((cout, *kk, cin)) / np.sqrt(cin * np.prod(kk))).astype(np.float32)
    bias = g.standard_normal(cout).astype(np.float32) if with_bias else None
    act = "relu" if relu else "none"

    out_f, out_i = ort_ops.run_sparse_conv(feats, idx, weight, bias, spatial_shape=shape, stride=s, padding=p,
                                           dilation=d, subm=subm, activation=act, threads=1)
    assert out_f.dtype == np.float32 and out_i.dtype == np.int32
    assert out_f.shape == (len(out_i), cout) and out_i.shape[1] == 4
    if subm:  # same rows in the same order
        assert np.array_equal(out_i, idx)
    else:  # sorted by (b, z, y, x)
        assert np.array_equal(out_i, out_i[np.lexsort(out_i.T[::-1])])

    # spconv: same site set; features equal after adding the bias and the activation
    ref_f, ref_i = _spconv_ref(feats, idx, weight, shape, batch, s, p, d, subm)
    ref_f, ref_i = _sorted(ref_f, ref_i)
    ours_f, ours_i = _sorted(out_f, out_i)
    assert np.array_equal(ours_i, ref_i), "output site set differs from spconv's"
    ref_f = ref_f + (bias if bias is not None else 0)
    if relu:
        ref_f = np.maximum(ref_f, 0)
    assert np.abs(ours_f - ref_f).max() < TOL

    # dense conv3d at the output sites; every other site of the dense output is "inactive"
    dense = _dense_ref(feats, idx, weight, bias, shape, batch, s, p, d, subm, relu)
    t = torch.from_numpy(ours_i).long()
    at_sites = dense[t[:, 0], :, t[:, 1], t[:, 2], t[:, 3]].numpy()
    assert np.abs(ours_f - at_sites).max() < TOL

    # rulebook pair counts: the C++ rulebook vs flops.rulebook_pairs (and the output count)
    pairs, m = ort_ops.rulebook_pair_counts(idx, kk, spatial_shape=shape, stride=s, padding=p, dilation=d,
                                            subm=subm)
    ref_pairs = rulebook_pairs(torch.from_numpy(idx), torch.from_numpy(out_i), shape, kk, s, p, d, subm)
    assert m == len(out_i)
    assert np.array_equal(pairs, ref_pairs.numpy())

    # bitwise identical with 2 intra-op threads
    out_f2, out_i2 = ort_ops.run_sparse_conv(feats, idx, weight, bias, spatial_shape=shape, stride=s, padding=p,
                                             dilation=d, subm=subm, activation=act, threads=2)
    assert np.array_equal(out_i2, out_i)
    assert out_f2.tobytes() == out_f.tobytes()


def test_large_input_is_deterministic_over_threads():
    """Enough sites for many parallel tasks (rulebook chunks and GEMM blocks) on both threads."""
    shape = (21, 120, 110)
    idx = _random_sites(3, shape, batch=2, density=0.05)
    g = np.random.default_rng(3)
    feats = g.standard_normal((len(idx), 32)).astype(np.float32)
    w = (g.standard_normal((48, 3, 3, 3, 32)) * 0.05).astype(np.float32)
    b = g.standard_normal(48).astype(np.float32)
    for subm, s in ((True, 1), (False, 2)):
        runs = [ort_ops.run_sparse_conv(feats, idx, w, b, spatial_shape=shape, stride=s, padding=1, subm=subm,
                                        activation="relu", threads=t) for t in (1, 2, 3)]
        for f, i in runs[1:]:
            assert np.array_equal(i, runs[0][1])
            assert f.tobytes() == runs[0][0].tobytes()


@pytest.mark.parametrize("subm", [True, False])
def test_empty_input(subm):
    w = np.ones((7, 3, 3, 3, 5), np.float32)
    f, i = ort_ops.run_sparse_conv(np.zeros((0, 5), np.float32), np.zeros((0, 4), np.int32), w,
                                   np.ones(7, np.float32), spatial_shape=(8, 8, 8), stride=1 if subm else 2,
                                   padding=1, subm=subm, activation="relu")
    assert f.shape == (0, 7) and f.dtype == np.float32
    assert i.shape == (0, 4) and i.dtype == np.int32


def test_chain_of_layers_matches_spconv():
    """A SECOND-like chain in one graph (indices flow from node to node) against spconv."""
    shape = (21, 40, 36)
    idx = _random_sites(11, shape, density=0.04)
    g = np.random.default_rng(11)
    feats = g.standard_normal((len(idx), 4)).astype(np.float32)
    layers = [(4, 16, 3, 1, 1, True), (16, 32, 3, 2, 1, False), (32, 32, 3, 1, 1, True),
              (32, 64, 3, 2, (0, 1, 1), False), (64, 64, (3, 1, 1), (2, 1, 1), 0, False)]
    specs, mods = [], []
    for cin, cout, k, s, p, subm in layers:
        cls = spconv.SubMConv3d if subm else spconv.SparseConv3d
        conv = cls(cin, cout, k, stride=s, padding=p, bias=False)
        bias = g.standard_normal(cout).astype(np.float32) * 0.1
        mods.append((conv, torch.from_numpy(bias)))
        specs.append(ort_ops.SparseConvSpec(conv.weight.detach().numpy(), bias, s, p, 1, subm, "relu",
                                            shape if not specs else None))
    sess = ort_ops.sparse_conv_session(ort_ops.make_sparse_conv_model(specs), threads=2)
    out_f, out_i = sess.run(None, {"features": feats, "indices": idx})
    with torch.no_grad(), use_sparse_backend("spconv"), SparseBlock("cpu"):
        x = spconv.SparseConvTensor(torch.from_numpy(feats), torch.from_numpy(idx), list(shape), 1)
        for conv, bias in mods:
            x = conv(x)
            x = x.replace_feature(torch.relu(x.features + bias))
    ref_f, ref_i = _sorted(x.features.numpy(), x.indices.numpy())
    ours_f, ours_i = _sorted(out_f, out_i)
    assert np.array_equal(ours_i, ref_i)
    assert np.abs(ours_f - ref_f).max() < TOL


def test_weight_as_graph_input_matches_initializer():
    """Weights fed at run time (packed per call) give the same bits as prepacked initializers."""
    from onnx import helper

    shape = (9, 30, 30)
    idx = _random_sites(5, shape, density=0.08)
    g = np.random.default_rng(5)
    feats = g.standard_normal((len(idx), 24)).astype(np.float32)
    w = (g.standard_normal((40, 3, 3, 3, 24)) * 0.1).astype(np.float32)
    b = g.standard_normal(40).astype(np.float32)
    spec = ort_ops.SparseConvSpec(w, b, 2, 1, 1, False, "relu", shape)
    model = ort_ops.make_sparse_conv_model(spec)
    ref = ort_ops.sparse_conv_session(model, threads=2).run(None, {"features": feats, "indices": idx})
    init = next(t for t in model.graph.initializer if t.name.endswith(".weight"))
    model.graph.initializer.remove(init)
    model.graph.input.append(helper.make_tensor_value_info(init.name, 1, list(w.shape)))
    out = ort_ops.sparse_conv_session(model, threads=2).run(None, {"features": feats, "indices": idx, init.name: w})
    assert np.array_equal(out[1], ref[1]) and out[0].tobytes() == ref[0].tobytes()


def _expect_error(match: str, **kw):
    import onnxruntime as ort

    args = dict(features=np.zeros((2, 5), np.float32), indices=np.array([[0, 1, 1, 1], [0, 1, 2, 1]], np.int32),
                weight=np.zeros((7, 3, 3, 3, 5), np.float32), bias=None, spatial_shape=(4, 4, 4), subm=True,
                padding=1)
    args.update(kw)
    feats, idx, w, b = args.pop("features"), args.pop("indices"), args.pop("weight"), args.pop("bias")
    with pytest.raises((ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                        ort.capi.onnxruntime_pybind11_state.RuntimeException), match=match):
        ort_ops.run_sparse_conv(feats, idx, w, b, **args)


def test_error_messages():
    prefix = r"clean_deploy::SparseConvolution \(node 'sparse_conv0'\): "
    _expect_error(prefix + r"input 'weight' must be float32 \[Cout, kD, kH, kW, Cin\] = \[Cout, 3, 3, 3, 5\]",
                  weight=np.zeros((7, 3, 3, 3, 4), np.float32))
    _expect_error(prefix + r"input 'indices' must be int32 \[N, 4\] = \[2, 4\]", indices=np.zeros((3, 4), np.int32))
    _expect_error(prefix + r"input 'bias' must be float32 \[Cout\] = \[7\]", bias=np.zeros(6, np.float32))
    _expect_error(prefix + r"indices row 1 = \(batch, z, y, x\) \(0, 1, 4, 1\) lies outside spatial_shape",
                  indices=np.array([[0, 1, 1, 1], [0, 1, 4, 1]], np.int32))
    _expect_error(prefix + r"indices rows 0 and 1 are the same site",
                  indices=np.array([[0, 1, 1, 1], [0, 1, 1, 1]], np.int32))
    _expect_error(r"needs stride \(1, 1, 1\)", stride=2)
    # the Python builder refuses it (clean_deploy/op_spec.py); the op must too, for graphs made elsewhere
    with pytest.raises(ValueError, match=r"'activation' must be one of \['none', 'relu'\], got 'gelu'"):
        ort_ops.run_sparse_conv(np.zeros((2, 5), np.float32), np.array([[0, 1, 1, 1], [0, 1, 2, 1]], np.int32),
                                np.zeros((7, 3, 3, 3, 5), np.float32), None, spatial_shape=(4, 4, 4), subm=True,
                                activation="gelu")
    import onnxruntime as ort
    from onnx import helper

    model = ort_ops.make_sparse_conv_model(ort_ops.SparseConvSpec(np.zeros((7, 3, 3, 3, 5), np.float32), None, 1, 1, 1,
                                                                  True, "relu", (4, 4, 4)))
    attrs = model.graph.node[0].attribute
    attrs[[a.name for a in attrs].index("activation")].CopyFrom(helper.make_attribute("activation", "gelu"))
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.RuntimeException,
                       match=r"sparse_conv0.\): activation must be \"relu\" or \"none\", got \"gelu\""):
        ort_ops.sparse_conv_session(model).run(None, {"features": np.zeros((2, 5), np.float32),
                                                      "indices": np.array([[0, 1, 1, 1], [0, 1, 2, 1]], np.int32)})


def test_library_exports_and_no_ort_link():
    assert ort_ops.gemm_isa() in {"avx512", "avx2", "generic"}
    # built against the API only (ORT_API_MANUAL_INIT): loads into any ONNX Runtime >= the headers
    ldd = subprocess.run(["ldd", str(LIB)], capture_output=True, text=True).stdout
    assert "onnxruntime" not in ldd


def test_missing_library_message(monkeypatch, tmp_path):
    monkeypatch.setenv(ort_ops.LIBRARY_ENV, str(tmp_path / "nope.so"))
    with pytest.raises(FileNotFoundError, match="bash scripts/build_csrc.sh"):
        ort_ops.library_path()


CPP_TEST = REPO / "build" / "csrc" / "test_sparse_conv_cpu"


@pytest.mark.skipif(not CPP_TEST.exists(), reason="C++ tests not built (bash scripts/build_csrc.sh)")
@pytest.mark.parametrize("isa", ["", "generic", "avx2"])
def test_cpp_kernel_tests(isa):
    env = dict(os.environ, CLEAN_DEPLOY_CPU_ISA=isa)
    res = subprocess.run([str(CPP_TEST)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all passed" in res.stdout


_CACHE_CHAIN = """
import sys, numpy as np
from clean_deploy.runtime import ort_ops
g = np.random.default_rng(5)
shape = (15, 60, 50)
z, y, x = np.nonzero(g.random(shape) < 0.05)
idx = np.stack([np.zeros_like(z), z, y, x], 1).astype(np.int32)
idx = idx[g.permutation(len(idx))]
feats = g.standard_normal((len(idx), 8)).astype(np.float32)
layers = [(8, 16, True, 1), (16, 16, True, 1), (16, 24, False, 2), (24, 24, True, 1), (24, 24, True, 1)]
specs = []
for i, (cin, cout, subm, s) in enumerate(layers):
    w = (g.standard_normal((cout, 3, 3, 3, cin)) * 0.2).astype(np.float32)
    specs.append(ort_ops.SparseConvSpec(w, g.standard_normal(cout).astype(np.float32), s, 1, 1, subm, "relu",
                                        shape if i == 0 else None))
sess = ort_ops.sparse_conv_session(ort_ops.make_sparse_conv_model(specs), threads=2)
before = ort_ops.rulebook_cache_stats()
for _ in range(2):
    f, i = sess.run(None, {"features": feats, "indices": idx})
after = ort_ops.rulebook_cache_stats()
np.save(sys.argv[1], f)
print(after[0] - before[0], after[1] - before[1])
"""


def test_submanifold_rulebook_cache_is_exact(tmp_path):
    """Consecutive subm layers over the same sites reuse one rulebook (a cache hit per repeated layer
    and run); the output is bitwise the same as with the cache off."""
    res = {}
    for flag in ("1", "0"):
        out = tmp_path / f"cache{flag}.npy"
        proc = subprocess.run([sys.executable, "-c", _CACHE_CHAIN, str(out)], capture_output=True, text=True,
                              env=dict(os.environ, CLEAN_DEPLOY_RULEBOOK_CACHE=flag), cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        res[flag] = (np.load(out), [int(v) for v in proc.stdout.split()])
    # cache on: per run, layer 0 and layer 3 miss (new sites), layers 1 and 4 hit; the second run
    # hits everywhere (same frame)
    assert res["1"][1] == [6, 2]
    assert res["0"][1] == [0, 0]
    assert res["1"][0].tobytes() == res["0"][0].tobytes()


@pytest.mark.parametrize("subm", [True, False])
def test_float16_features_equal_the_float_kernel_rounded(subm):
    """The float16 kernel of SparseConvolution (chosen by ONNX Runtime from the features' type): the
    float32 kernel's result on the widened input, rounded to float16, bit for bit."""
    from onnx import TensorProto

    shape = (10, 24, 20)
    idx = _random_sites(21, shape)
    g = np.random.default_rng(21)
    w = (g.standard_normal((12, 3, 3, 3, 6)) * 0.2).astype(np.float32)
    b = g.standard_normal(12).astype(np.float32)
    s = 1 if subm else 2
    model = ort_ops.make_sparse_conv_model([ort_ops.SparseConvSpec(w, b, s, 1, 1, subm, "relu", shape)])
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in ("features", "out_features"):
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    f16 = g.standard_normal((len(idx), 6)).astype(np.float16)
    o16, i16 = ort_ops.sparse_conv_session(model, 2).run(None, {"features": f16, "indices": idx})
    o32, i32 = ort_ops.run_sparse_conv(f16.astype(np.float32), idx, w, b, spatial_shape=shape, stride=s, padding=1,
                                       subm=subm, activation="relu")
    assert o16.dtype == np.float16 and np.array_equal(i16, i32)
    assert o16.tobytes() == o32.astype(np.float16).tobytes()


def test_isa_translation_units_define_no_library_code():
    """The files compiled for AVX2 / AVX-512 (gemm_avx2, gemm_avx512, int8_avx2, int8_vnni) may hold
    nothing but intrinsics: an inline library function instantiated there (int8_vnni once resized a
    std::vector, which defined a weak std::vector<int>::_M_default_append compiled for AVX-512) can be
    the copy the linker keeps for the whole library, and crash other code on a CPU without AVX-512."""
    import shutil

    root = Path(__file__).resolve().parents[1] / "build" / "csrc"
    objs = sorted(root.rglob("*.cpp.o"))
    isa = [o for o in objs if o.name.split(".")[0] in ("gemm_avx2", "gemm_avx512", "int8_avx2", "int8_vnni")]
    assert len(isa) == 4, f"ISA objects not found under {root}: {[o.name for o in objs]}"
    nm = shutil.which("nm")
    assert nm, "nm (binutils) is needed to read the objects"
    for o in isa:
        syms = subprocess.run([nm, "-C", "--defined-only", str(o)], capture_output=True, text=True, check=True).stdout
        lib = [line for line in syms.splitlines() if "std::" in line or "__gnu_cxx::" in line]
        assert not lib, f"{o.name} defines library code: {lib[:3]}"
