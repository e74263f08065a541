"""clean_deploy::SparseConvolutionInt8 (csrc/cpu/sparse_conv_int8.cpp through ONNX Runtime) against the
NumPy integer reference (clean_deploy.quantize.reference), bitwise, on every int8 micro-kernel this CPU
can execute and with 1 and 2 intra-op threads; the reference itself against a float64 dense conv3d
and the C++ rulebook; errors for bad scales, dtypes, shapes and accumulator overflow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clean_deploy.quantize.reference import rulebook_reference, sparse_conv_int8_reference
from clean_deploy.runtime import ort_ops

try:
    ort_ops.library_path()
except FileNotFoundError as err:  # pragma: no cover - CI builds the library in `make setup`
    pytest.skip(str(err), allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]

# name: (spatial shape, batch, cin, cout, kernel, stride, padding, subm, relu, density)
CASES = {
    "subm3": ((10, 24, 20), 1, 16, 16, 3, 1, 1, True, False, 0.08),
    "strided_s2_p1": ((11, 24, 20), 1, 16, 32, 3, 2, 1, False, True, 0.08),
    "strided_p011_wide": ((11, 24, 20), 1, 32, 48, 3, 2, (0, 1, 1), False, False, 0.08),
    "z_collapse_311": ((5, 20, 18), 1, 32, 64, (3, 1, 1), (2, 1, 1), 0, False, True, 0.1),
    "odd_channels_5_to_7": ((9, 17, 13), 2, 5, 7, 3, 2, 1, False, True, 0.1),
    "odd_channels_subm_13_to_33": ((9, 17, 13), 2, 13, 33, 3, 1, 1, True, False, 0.1),
    "single_voxel_subm": ((4, 4, 4), 1, 8, 16, 3, 1, 1, True, True, 0.0),
    "single_voxel_strided": ((4, 4, 4), 1, 8, 16, 3, 2, 1, False, False, 0.0),
    "empty_subm": ((6, 6, 6), 1, 4, 8, 3, 1, 1, True, False, -1.0),
    "empty_strided": ((6, 6, 6), 1, 4, 8, 3, 2, 1, False, True, -1.0),
    "many_blocks": ((21, 100, 90), 2, 16, 32, 3, 1, 1, True, True, 0.05),
    # the row-stationary VNNI path (cout <= 32, cin <= 64) with more than 32 and fewer than 16 offsets
    "subm5_125_offsets": ((8, 12, 10), 1, 6, 20, 5, 1, 2, True, True, 0.15),
    "kernel_133_9_offsets": ((6, 14, 12), 1, 64, 9, (1, 3, 3), 1, (0, 1, 1), True, False, 0.1),
}


def _t3(v):
    return [int(v)] * 3 if np.isscalar(v) else [int(x) for x in v]


def make_case(name: str):
    shape, batch, cin, cout, k, s, p, subm, relu, density = CASES[name]
    g = np.random.default_rng(sum(map(ord, name)))
    if density < 0:
        idx = np.zeros((0, 4), np.int32)
    elif density == 0:
        idx = np.array([[0, 1, 1, 1]], np.int32)
    else:
        rows = []
        for b in range(batch):
            z, y, x = np.nonzero(g.random(shape) < density)
            rows.append(np.stack([np.full_like(z, b), z, y, x], 1))
        idx = np.concatenate(rows).astype(np.int32)
        idx = idx[g.permutation(len(idx))]
    kk = _t3(k)
    feats = g.integers(-128, 128, (len(idx), cin)).astype(np.int8)  # -128 included: the VNNI shift's edge
    weight = g.integers(-127, 128, (cout, *kk, cin)).astype(np.int8)
    w_scale = (g.random(cout) * 0.004 + 0.0005).astype(np.float32)
    bias = g.integers(-20000, 20000, cout).astype(np.int32)
    x_scale, y_scale = np.float32(0.05), np.float32(0.3)
    attrs = dict(spatial_shape=shape, stride=_t3(s), padding=_t3(p), subm=subm, activation="relu" if relu else "none")
    return feats, idx, weight, x_scale, w_scale, y_scale, bias, attrs


def run_op(feats, idx, weight, x_scale, w_scale, y_scale, bias, attrs, threads):
    model = ort_ops.make_sparse_conv_int8_model(weight, w_scale, x_scale, y_scale, bias, **attrs)
    return ort_ops.sparse_conv_session(model, threads).run(None, {"features": feats, "indices": idx})


def _worker() -> None:
    """Subprocess body: every case on the kernel CLEAN_DEPLOY_CPU_ISA selects, 1 and 2 threads."""
    out = {"isa": ort_ops.int8_isa(), "cases": {}}
    for name in CASES:
        feats, idx, weight, xs, ws, ys, bias, attrs = make_case(name)
        ref_f, ref_i = sparse_conv_int8_reference(feats, idx, weight, xs, ws, ys, bias, **attrs)
        res = {}
        for t in (1, 2):
            f, i = run_op(feats, idx, weight, xs, ws, ys, bias, attrs, t)
            res[t] = {"indices_equal": bool(np.array_equal(i, ref_i)), "features_bitwise": f.tobytes() == ref_f.tobytes(),
                      "dtype": str(f.dtype), "rows": int(len(f)), "distinct": int(np.unique(f).size)}
        out["cases"][name] = res
    print(json.dumps(out))


def _cpu_flags() -> set[str]:
    try:
        return set(" ".join(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split())
    except OSError:  # pragma: no cover
        return set()


def _isas():
    flags = _cpu_flags()
    isas = [("generic", "generic")]
    if "avx2" in flags:
        isas.append(("avx2", "avx2"))
    if {"avx512f", "avx512bw", "avx512_vnni"} <= flags:
        isas.append(("", "avx512_vnni"))
    return isas


@pytest.mark.parametrize("cap,expected", _isas(), ids=[e for _, e in _isas()])
def test_kernel_matches_integer_reference_bitwise(cap, expected):
    env = dict(os.environ, CLEAN_DEPLOY_CPU_ISA=cap)
    proc = subprocess.run([sys.executable, __file__, "--worker"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["isa"] == expected
    for name, by_threads in res["cases"].items():
        for t, r in by_threads.items():
            assert r["dtype"] == "int8", (name, t)
            assert r["indices_equal"], (name, t)
            assert r["features_bitwise"], f"{name}: {expected} kernel with {t} threads differs from the reference"
    # the cases exercise the kernel: real outputs with many distinct values, empty cases empty
    assert res["cases"]["strided_p011_wide"]["1"]["distinct"] > 50
    assert res["cases"]["empty_strided"]["1"]["rows"] == 0
    assert res["cases"]["single_voxel_strided"]["1"]["rows"] == 8  # one input reaches 2x2x2 outputs


@pytest.mark.parametrize("name", ["subm3", "strided_s2_p1", "z_collapse_311", "odd_channels_5_to_7"])
def test_reference_matches_dense_conv_and_cpp_rulebook(name):
    """The reference's accumulator equals a float64 dense conv3d of the integers (exact below 2^53);
    its sites and pair counts equal the C++ rulebook's."""
    feats, idx, weight, xs, ws, ys, bias, attrs = make_case(name)
    _, batch, *_ = CASES[name]
    k = list(weight.shape[1:4])
    out_i, nbr = rulebook_reference(idx, k, spatial_shape=attrs["spatial_shape"], stride=attrs["stride"],
                                    padding=attrs["padding"], subm=attrs["subm"])
    pairs, m = ort_ops.rulebook_pair_counts(idx, k, spatial_shape=attrs["spatial_shape"], stride=attrs["stride"],
                                            padding=attrs["padding"], subm=attrs["subm"])
    assert m == len(out_i) and np.array_equal(pairs, (nbr >= 0).sum(0))
    # accumulator through the reference with unit scales and no clipping: y_scale huge makes m tiny,
    # so compare the pre-requantisation sums via a float64 dense conv instead
    dense = torch.zeros(batch, weight.shape[4], *attrs["spatial_shape"], dtype=torch.float64)
    t = torch.from_numpy(idx).long()
    dense[t[:, 0], :, t[:, 1], t[:, 2], t[:, 3]] = torch.from_numpy(feats.astype(np.float64))
    w = torch.from_numpy(weight.astype(np.float64)).permute(0, 4, 1, 2, 3)
    if attrs["subm"]:
        ref = F.conv3d(dense, w, None, 1, [kk // 2 for kk in k])
    else:
        ref = F.conv3d(dense, w, None, attrs["stride"], attrs["padding"])
    o = torch.from_numpy(out_i).long()
    at_sites = ref[o[:, 0], :, o[:, 1], o[:, 2], o[:, 3]].numpy() + bias
    acc = np.zeros_like(at_sites)
    wk = weight.reshape(weight.shape[0], -1, weight.shape[4]).astype(np.int64)
    for kk in range(wk.shape[1]):
        r = nbr[:, kk] >= 0
        acc[r] += feats[nbr[r, kk]].astype(np.int64) @ wk[:, kk].T
    acc += bias
    assert np.array_equal(acc, at_sites)
    # and the int8 output is that accumulator requantised
    out_f, _ = sparse_conv_int8_reference(feats, idx, weight, xs, ws, ys, bias, **attrs)
    m = (np.float64(xs) * ws.astype(np.float64) / np.float64(ys)).astype(np.float32)
    y = np.clip(np.rint(at_sites.astype(np.float32) * m), 0 if attrs["activation"] == "relu" else -128, 127)
    assert np.array_equal(out_f, y.astype(np.int8))


@pytest.mark.parametrize("what,expected", [
    ("x_scale_zero", "x_scale must be finite and > 0"),
    ("y_scale_negative", "y_scale must be finite and > 0"),
    ("w_scale_nan", "w_scale[3] must be finite and > 0"),
    ("w_scale_shape", "input 'w_scale' must be float32 [Cout] = [16]"),
    ("bias_shape", "input 'bias' must be int32 [Cout] = [16]"),
    ("weight_cin", "input 'weight' must be int8 [Cout, kD, kH, kW, Cin] = [Cout, 3, 3, 3, 16]"),
    ("overflow", "int32 accumulator could overflow"),
])
def test_bad_inputs_are_clear_errors(what, expected):
    feats, idx, weight, xs, ws, ys, bias, attrs = make_case("subm3")
    if what == "x_scale_zero":
        xs = np.float32(0)
    elif what == "y_scale_negative":
        ys = np.float32(-1)
    elif what == "w_scale_nan":
        ws = ws.copy()
        ws[3] = np.nan
    elif what == "w_scale_shape":
        ws = ws[:5]
    elif what == "bias_shape":
        bias = bias[:3]
    elif what == "weight_cin":
        weight = weight[..., :8]
    elif what == "overflow":
        bias = bias.copy()
        bias[0] = 2**31 - 100
    with pytest.raises(Exception) as e:
        run_op(feats, idx, weight, xs, ws, ys, bias, attrs, 1)
    msg = str(e.value)
    assert expected in msg and "SparseConvolutionInt8" in msg and "node 'sparse_conv_int8'" in msg, msg


def test_wrong_dtype_is_rejected():
    feats, idx, weight, xs, ws, ys, bias, attrs = make_case("subm3")
    model = ort_ops.make_sparse_conv_int8_model(weight, ws, xs, ys, bias, **attrs)
    sess = ort_ops.sparse_conv_session(model, 1)
    with pytest.raises(Exception, match="(?i)type.*features|features.*type|int8"):
        sess.run(None, {"features": feats.astype(np.float32), "indices": idx})


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker()
