"""`clean-deploy quantize` on an exported, trained student: graph form per target, numerics of the int8
sparse chain against the float32 one, box parity of the int8 model, weight/bias quantisation against
NumPy, calibration methods, keep-fp32, and clear errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from clean_deploy.export.onnx_export import export_onnx
from clean_deploy.quantize.calibrate import collect_ranges
from clean_deploy.quantize.config import QuantizeConfig
from clean_deploy.quantize.evaluate import box_parity, run_split
from clean_deploy.quantize.pipeline import quantize_onnx
from clean_deploy.quantize.sparse_int8 import bias_int32, weight_per_channel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(trained_students, tmp_path_factory):
    det = trained_students["centerpoint_fast@0.25x"][0]
    return export_onnx(det, tmp_path_factory.mktemp("q") / "student.onnx").onnx_path


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_weight_and_bias_quantisation():
    g = np.random.default_rng(0)
    w = g.standard_normal((7, 3, 3, 3, 5)).astype(np.float32) * g.random((7, 1, 1, 1, 1)).astype(np.float32)
    w[3] = 0  # a pruned-away channel
    q, s = weight_per_channel(w)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (7,)
    assert np.abs(q).max() == 127 and (q[3] == 0).all() and s[3] == 1.0
    err = np.abs(q.astype(np.float32) * s[:, None, None, None, None] - w)
    assert (err <= s[:, None, None, None, None] / 2 + 1e-7).all()
    for co in (0, 1, 2, 4):  # every non-zero channel reaches +-127 exactly at its largest weight
        assert np.abs(q[co]).max() == 127
    b = g.standard_normal(7).astype(np.float32)
    bq = bias_int32(b, np.float32(0.02), s)
    assert bq.dtype == np.int32
    assert np.allclose(bq * 0.02 * s, b, atol=0.02 * s.max())
    with pytest.raises(ValueError, match="does not fit int32"):
        bias_int32(np.array([1e6], np.float32), np.float32(1e-6), np.array([1e-6], np.float32))


def test_calibration_methods_nest(exported, synth_data):
    model = onnx.load(str(exported))
    side = json.loads(exported.with_suffix(".json").read_text())
    r = {m: collect_ranges(model, side, synth_data, QuantizeConfig(method=m, calib_frames=4), threads=1)
         for m in ("minmax", "percentile", "entropy")}
    assert r["minmax"].frames == 4 and set(r["minmax"].ranges) == set(r["percentile"].ranges) == set(r["entropy"].ranges)
    sparse = [n.output[0] for n in model.graph.node if n.op_type == "SparseConvolution"]
    assert set(sparse) <= set(r["minmax"].ranges)
    for name, (lo, hi) in r["minmax"].ranges.items():
        for m in ("percentile", "entropy"):  # never wider than what was seen
            a, b = r[m].ranges[name]
            assert lo - 1e-6 <= a <= b <= hi + 1e-6, (m, name)
    # clipping outliers: the percentile range is strictly inside min-max for some tensor
    assert any(r["percentile"].absmax(n) < r["minmax"].absmax(n) * 0.999 for n in r["minmax"].ranges)


def test_onnxruntime_target_graph_and_parity(exported, synth_data, tmp_path):
    out = tmp_path / "int8.onnx"
    rep = quantize_onnx(exported, out, synth_data, QuantizeConfig(calib_frames=6), threads=1)
    ops = _ops(out)
    n_sparse = _ops(exported)["SparseConvolution"]
    assert ops["SparseConvolution"] == 0 and ops["SparseConvolutionInt8"] == n_sparse == len(rep["int8_sparse_layers"])
    # one QuantizeLinear enters the sparse chain, one DequantizeLinear leaves it (int8 flows between)
    sparse_names = tuple(n.name + "." for n in onnx.load(str(exported)).graph.node if n.op_type == "SparseConvolution")
    sparse_q = [n for n in onnx.load(str(out)).graph.node if n.name.startswith(sparse_names)
                and n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert Counter(n.op_type for n in sparse_q) == {"QuantizeLinear": 1, "DequantizeLinear": 1}
    assert len(rep["int8_dense_layers"]) == _ops(exported)["Conv"] + _ops(exported)["ConvTranspose"]
    # ONNX Runtime target: uint8 activations in the dense part
    g = onnx.load(str(out)).graph
    zps = {i.name: numpy_helper.to_array(i) for i in g.initializer if "zero_point" in i.name}
    assert any(z.dtype == np.uint8 for z in zps.values())
    assert rep["file_bytes"]["int8"] < rep["file_bytes"]["fp32"] / 2.5
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["model"] == "int8.onnx" and side["quantization"]["calibration"]["frames"] == 6

    import torch

    torch_threads = torch.get_num_threads()
    # the train frames (the student was fitted to them): enough confident boxes for a share to mean
    # something (the 2 val frames held 2 boxes at score >= 0.3, so one box decided the test)
    d32, a32 = run_split(exported, synth_data, "train", threads=1)
    d8, a8 = run_split(out, synth_data, "train", threads=1)
    # torch runs single-threaded while ONNX Runtime predicts, and gets its threads back (a leaked
    # set_num_threads(1) changed later tests' float32 training curves in the same worker)
    assert torch.get_num_threads() == torch_threads
    par = box_parity(d32, d8, iou_threshold=0.5, min_score=0.3)
    assert par["boxes_ref"] >= 5, par
    # tolerances fixed before measuring: most confident boxes survive, scores move little
    assert par["matched_share_ref"] >= 0.7, par
    assert par["abs_score_diff"]["median"] < 0.05, par
    assert par["center_diff_m"]["median"] < 0.1, par


def test_int8_sparse_chain_tracks_float(exported, synth_data, tmp_path):
    """The int8 chain's last sparse output (dequantised) against the float32 chain's, frame by frame:
    error small against the tensor's range (an independent check of scales, bias and wiring)."""
    import onnxruntime as ort

    from clean_deploy.quantize.calibrate import augmented_model, calibration_inputs
    from clean_deploy.runtime.ort_ops import session_options

    out = tmp_path / "int8.onnx"
    quantize_onnx(exported, out, synth_data, QuantizeConfig(calib_frames=6, dense=False), threads=1)
    f32 = onnx.load(str(exported))
    last = [n.output[0] for n in f32.graph.node if n.op_type == "SparseConvolution"][-1]
    side = json.loads(exported.with_suffix(".json").read_text())
    s32 = ort.InferenceSession(augmented_model(f32, [last]).SerializeToString(), session_options(1))
    s8 = ort.InferenceSession(augmented_model(onnx.load(str(out)), [last]).SerializeToString(), session_options(1))
    errs = []
    for feed in calibration_inputs(side, synth_data, "val", 2):
        a = s32.run([last], feed)[0]
        b = s8.run([last], feed)[0]
        assert a.shape == b.shape and a.size
        errs.append(np.abs(a - b).mean() / (np.abs(a).max() + 1e-9))
    assert max(errs) < 0.03, errs


def test_tensorrt_target_is_symmetric_and_keep_fp32(exported, synth_data, tmp_path):
    model = onnx.load(str(exported))
    sparse = [n.name for n in model.graph.node if n.op_type == "SparseConvolution"]
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    out = tmp_path / "trt.onnx"
    rep = quantize_onnx(exported, out, synth_data,
                        QuantizeConfig(target="tensorrt", calib_frames=4, keep_fp32=(sparse[0], first_conv)), threads=1)
    g = onnx.load(str(out)).graph
    zps = {i.name: numpy_helper.to_array(i) for i in g.initializer if "zero_point" in i.name}
    assert any(z.dtype == np.int8 for z in zps.values())
    for name, z in zps.items():  # activations int8, biases int32: every zero point 0
        assert z.dtype in (np.int8, np.int32) and not z.any(), name
    ops = Counter(n.op_type for n in g.node)
    # the TensorRT plugins run the float sparse conv: the sparse convs stay float32
    assert ops["SparseConvolution"] == len(sparse) and ops["SparseConvolutionInt8"] == 0
    assert sorted(rep["fp32_layers"]) == sorted(sparse + [first_conv])
    assert first_conv not in rep["int8_dense_layers"] and len(rep["int8_dense_layers"]) > 0
    with pytest.raises(ValueError, match="TensorRT plugins implement the float32/float16"):
        QuantizeConfig(target="tensorrt", sparse=True)
    # ONNX Runtime target with one sparse layer kept: the chain re-enters int8 after it
    out = tmp_path / "ort.onnx"
    rep = quantize_onnx(exported, out, synth_data, QuantizeConfig(calib_frames=4, keep_fp32=(sparse[1],)), threads=1)
    ops = _ops(out)
    assert ops["SparseConvolution"] == 1 and ops["SparseConvolutionInt8"] == len(sparse) - 1
    assert rep["fp32_layers"] == [sparse[1]]
    # a dense layer kept float32 keeps its ReLU float32 too (no 8-bit activations right behind it)
    out = tmp_path / "ort_conv.onnx"
    quantize_onnx(exported, out, synth_data, QuantizeConfig(calib_frames=4, keep_fp32=(first_conv,)), threads=1)
    g = onnx.load(str(out)).graph
    relu = [n for n in g.node if n.op_type == "Relu"]
    assert len(relu) == 1 and relu[0].input[0] == next(n.output[0] for n in model.graph.node if n.name == first_conv)


def test_kept_layers_int8_weights(exported, synth_data, tmp_path):
    """--kept-weights int8: the kept layers compute in float32 from int8-stored weights. Reference:
    the float-kept model with those weights replaced by NumPy's dequantised values gives the same
    boxes; the file loses 3 of every 4 weight bytes of the kept layers."""
    from clean_deploy.quantize.weight_only import WEIGHT_INPUTS

    model = onnx.load(str(exported))
    kept = ([next(n.name for n in model.graph.node if n.op_type == "SparseConvolution")]
            + [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")][:1]
            + [n.name for n in model.graph.node if n.op_type == "ConvTranspose"][:1])
    assert len(set(kept)) == len(kept) >= 2
    f32, w8 = tmp_path / "kept_f32.onnx", tmp_path / "kept_w8.onnx"
    ranges = collect_ranges(model, json.loads(exported.with_suffix(".json").read_text()), synth_data,
                            QuantizeConfig(calib_frames=4), 1)
    rep32 = quantize_onnx(exported, f32, synth_data, QuantizeConfig(calib_frames=4, keep_fp32=tuple(kept)), 1,
                          ranges=ranges)
    rep8 = quantize_onnx(exported, w8, synth_data,
                         QuantizeConfig(calib_frames=4, keep_fp32=tuple(kept), kept_weights="int8"), 1, ranges=ranges)
    assert rep8["fp32_layers"] == rep32["fp32_layers"] == sorted(kept)
    assert sorted(r["layer"] for r in rep8["int8_weight_only_layers"]) == sorted(kept)
    g8 = onnx.load(str(w8)).graph
    inits8 = {i.name: numpy_helper.to_array(i) for i in g8.initializer}
    producer = {o: n for n in g8.node for o in n.output}
    # the reference: the float-kept model, kept weights replaced by q * scale computed here
    ref = onnx.load(str(f32))
    ref_inits = {i.name: i for i in ref.graph.initializer}
    saved = 0
    for name in kept:
        node8 = next(n for n in g8.node if n.name == name)
        node32 = next(n for n in ref.graph.node if n.name == name)
        idx, axis = WEIGHT_INPUTS[node32.op_type]
        w = numpy_helper.to_array(ref_inits[node32.input[idx]])
        assert node8.op_type == node32.op_type  # still the float op
        dq = producer[node8.input[idx]]
        assert dq.op_type == "DequantizeLinear" and next(a.i for a in dq.attribute if a.name == "axis") == axis
        q_ref, s_ref = weight_per_channel(np.moveaxis(w, axis, 0))
        assert np.array_equal(inits8[dq.input[0]], np.moveaxis(q_ref, 0, axis)) and inits8[dq.input[0]].dtype == np.int8
        assert np.array_equal(inits8[dq.input[1]], s_ref) and not inits8[dq.input[2]].any()
        assert node32.input[idx] not in inits8  # no float copy left in the file
        deq = np.moveaxis(q_ref.astype(np.float32) * s_ref.reshape(-1, *([1] * (w.ndim - 1))), 0, axis)
        assert 0 < np.abs(deq - w).max() <= s_ref.max() / 2 + 1e-7
        ref_inits[node32.input[idx]].CopyFrom(numpy_helper.from_array(deq.astype(np.float32), node32.input[idx]))
        saved += w.nbytes
    ref_path = tmp_path / "kept_ref.onnx"
    onnx.save(ref, str(ref_path))
    ref_path.with_suffix(".json").write_text(f32.with_suffix(".json").read_text())
    sizes = (f32.stat().st_size, w8.stat().st_size)
    assert sizes[0] - sizes[1] > 0.6 * saved, (sizes, saved)
    d_ref, a_ref = run_split(ref_path, synth_data, "val", 4, threads=1)
    d_w8, a_w8 = run_split(w8, synth_data, "val", 4, threads=1)
    assert sum(len(d.boxes) for d in d_ref) > 0
    for a, b in zip(d_ref, d_w8):
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-5)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-6)
        assert np.array_equal(a.labels, b.labels)
    assert json.loads(w8.with_suffix(".json").read_text())["quantization"]["kept_weights"] == "int8"
    with pytest.raises(ValueError, match="kept_weights int8 with target tensorrt"):
        QuantizeConfig(target="tensorrt", kept_weights="int8")
    with pytest.raises(ValueError, match="kept_weights must be one of"):
        QuantizeConfig(kept_weights="int4")


def test_cli_errors_are_one_line(exported, synth_data, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "clean_deploy", "quantize", "--onnx", str(exported), "--data",
                               str(synth_data), "--out", str(tmp_path / "x.onnx"), *args],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
    r = run("--keep-fp32", "no_such_layer", "--calib-frames", "1")
    assert r.returncode == 4 and "keep_fp32: no node named ['no_such_layer']" in r.stderr and "Traceback" not in r.stderr
    r = run("--method", "histogram")
    assert r.returncode == 4 and "method must be one of minmax, percentile, entropy" in r.stderr
    r = subprocess.run([sys.executable, "-m", "clean_deploy", "quantize", "--onnx", str(exported), "--data",
                        str(synth_data), "--out", str(exported)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 4 and "would overwrite its float32 source" in r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_jackknife_se_of_a_mean_is_the_se_of_the_group_means():
    """Independent reference: for the mean of K equal groups, the delete-a-group jackknife SE is the
    textbook standard error of the group means, std(ddof=1) / sqrt(K)."""
    from clean_deploy.quantize.sensitivity import jackknife_se

    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    k = 5
    groups = [x[i::k] for i in range(k)]
    leave_out = [np.concatenate([g for j, g in enumerate(groups) if j != i]).mean() for i in range(k)]
    means = np.array([g.mean() for g in groups])
    assert jackknife_se(leave_out) == pytest.approx(means.std(ddof=1) / np.sqrt(k), rel=1e-12)
    assert jackknife_se([3.0, 3.0, 3.0]) == 0.0
    with pytest.raises(ValueError, match=">= 2"):
        jackknife_se([1.0])


def test_auto_keep_needs_a_drop_beyond_threshold_and_noise():
    from clean_deploy.quantize.sensitivity import auto_keep

    prof = {"layers": [{"layer": "a", "drop": 0.9, "drop_se": 0.6},   # above the threshold, within 2 SE
                       {"layer": "b", "drop": 1.5, "drop_se": 0.3},   # above both
                       {"layer": "c", "drop": 0.4, "drop_se": 0.05},  # beyond the noise, below the threshold
                       {"layer": "d", "drop": 0.7, "drop_se": 0.3},   # above both (0.7 > 0.6)
                       {"layer": "e", "drop": 0.8, "drop_se": None}]}  # no SE: the threshold alone
    assert auto_keep(prof, 0.5) == ["b", "e", "d"]
    assert auto_keep(prof, 0.5, z=1.0) == ["b", "a", "e", "d"]
    assert auto_keep(prof, 0.5, z=3.0) == ["b", "e"]


def test_sensitivity_profile_standard_errors_from_the_kept_predictions(exported, synth_data, tmp_path):
    """Each drop's SE is the jackknife of the per-fold drops, recomputed here from the predictions
    the profile wrote (KITTI evaluation of the frames outside each fold); drop = fp32 - layer AP."""
    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.eval.files import load_annos
    from clean_deploy.eval.kitti_protocol import evaluate
    from clean_deploy.quantize.sensitivity import jackknife_se, quantizable_layers, sensitivity_profile
    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.train.evaluate import mean_moderate_ap

    cfg = QuantizeConfig(calib_frames=4, dense=False)  # the sparse layers only: a short profile
    model = onnx.load(str(exported))
    ranges = collect_ranges(model, read_sidecar(exported.with_suffix(".json")), synth_data, cfg, 1)
    frames, folds = 6, 2  # the fixture's train frames (its val split has 2)
    prof = sensitivity_profile(exported, synth_data, "train", frames, cfg, ranges, tmp_path, threads=1, folds=folds)
    layers = quantizable_layers(model, cfg)
    assert [r["layer"] for r in prof["layers"]] == layers and prof["folds"] == folds
    side = read_sidecar(exported.with_suffix(".json"))
    ids = KittiReader(synth_data, "train").frame_ids[:frames]

    def fold_aps(name):
        _, gt, dt = load_annos(synth_data, "train", tmp_path / "pred" / name, frame_ids=ids,
                               eval_range=side["preprocess"]["point_cloud_range"])
        return np.array([mean_moderate_ap(evaluate([g for i, g in enumerate(gt) if i % folds != k],
                                                   [d for i, d in enumerate(dt) if i % folds != k],
                                                   ("Car", "Pedestrian", "Cyclist"))) for k in range(folds)])

    base = fold_aps("fp32")
    for i, r in enumerate(prof["layers"]):
        assert r["drop"] == pytest.approx(prof["fp32"] - r["ap"], abs=1e-9)
        assert r["drop_se"] == pytest.approx(jackknife_se(base - fold_aps(f"layer{i}")), abs=1e-9)
    assert prof["int8_all_se"] == pytest.approx(jackknife_se(base - fold_aps("int8_all")), abs=1e-9)
    with pytest.raises(ValueError, match="too few for 2 folds"):
        sensitivity_profile(exported, synth_data, "train", 3, cfg, ranges, tmp_path / "x", threads=1, folds=2)


def test_paired_bootstrap_matches_resampled_frame_lists(synth_data, tmp_path):
    """Each bootstrap value is the AP difference on a list of frame ids drawn with replacement,
    recomputed here through the file-level evaluation of those id lists; identical predictions
    give zero differences. Predictions: the labels themselves (scored), and a worse copy."""
    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.quantize.sensitivity import paired_bootstrap
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap

    classes = ("Car", "Pedestrian", "Cyclist")
    frames = 6
    ids = KittiReader(synth_data, "train").frame_ids[:frames]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    g = np.random.default_rng(1)
    for i in ids:
        rows = [r.split() for r in (synth_data / "training" / "label_2" / f"{i}.txt").read_text().splitlines()]
        rows = [r[:15] for r in rows if r and r[0] in classes]
        (a / f"{i}.txt").write_text("".join(" ".join(r) + f" {g.uniform(0.5, 1.0):.4f}\n" for r in rows))
        # the worse model: every third object missed, a shifted false positive per object kept
        worse = []
        for k, r in enumerate(rows):
            if k % 3 == 2:
                continue
            fp = list(r)
            fp[11] = f"{float(r[11]) + 3.0:.2f}"
            worse += [" ".join(r) + f" {g.uniform(0.2, 1.0):.4f}", " ".join(fp) + f" {g.uniform(0.2, 1.0):.4f}"]
        (b / f"{i}.txt").write_text("".join(w + "\n" for w in worse))
    whole_scene = None  # no evaluation range
    assert not paired_bootstrap(synth_data, "train", a, a, ids, whole_scene, classes, 3).any()
    boot = paired_bootstrap(synth_data, "train", a, b, ids, whole_scene, classes, 4, seed=3)
    draws = np.random.default_rng(3)
    for v in boot:
        pick = [ids[i] for i in draws.integers(0, frames, frames)]
        ref = (mean_moderate_ap(evaluate_predictions(synth_data, "train", b, classes, frame_ids=pick))
               - mean_moderate_ap(evaluate_predictions(synth_data, "train", a, classes, frame_ids=pick)))
        assert v == pytest.approx(ref, abs=1e-9)
    assert (boot < -1.0).all() and np.ptp(boot) > 0  # worse on every draw, by amounts that vary
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(synth_data, "train", a, b, ids, whole_scene, classes, 1)
