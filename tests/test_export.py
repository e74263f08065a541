"""Export: valid ONNX with our custom ops + sidecar; the decode + redundancy-elimination op equals
the PyTorch post-processing; a trained student on ONNX Runtime gives PyTorch's boxes; bad inputs
to the runtime fail clearly."""
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from clean_deploy.runtime.check import check_parity, polygraphy_compare
from clean_deploy.export.onnx_export import DOMAIN, export_onnx, redundancy_attributes
from clean_deploy.models.config import RedundancyConfig
from clean_deploy.models.detector import build_detector
from clean_deploy.models.postprocess import postprocess
from clean_deploy.models.zoo import get_config, with_iou_branch
from clean_deploy.runtime.ort_ops import session_options
from clean_deploy.runtime.ort_session import OrtSession
from clean_deploy.runtime.preprocess import PointCloudInputError

NAMES = ["second_fast@0.25x", "centerpoint_fast@0.25x", "pointpillars_fast@0.25x"]


@pytest.mark.parametrize("name", NAMES)
def test_export_is_valid_onnx_with_custom_ops(name, tmp_path):
    det = build_detector(with_iou_branch(get_config(name))).eval()
    res = export_onnx(det, tmp_path / "m.onnx")
    model = onnx.load(str(res.onnx_path))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node if n.domain == DOMAIN]
    n_sparse = 0 if det.backbone3d is None else sum(len(s) for s in det.cfg.backbone3d.stages) + 1
    assert ops.count("SparseConvolution") == n_sparse == res.num_sparse_nodes
    assert ops.count("IoUAwareRedundancyElimination") == 1
    assert [i.name for i in model.graph.input] == ["voxels", "voxel_num_points", "voxel_coords"]
    assert [o.name for o in model.graph.output] == ["boxes", "scores", "labels", "valid_count"]
    # one opset import per domain (tools such as ONNX Runtime's quantiser refuse duplicates)
    domains = [o.domain for o in model.opset_import]
    assert sorted(domains) == sorted(set(domains)) == ["", DOMAIN]
    # BN folded: no BatchNormalization left anywhere
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    # the mean VFE sums each voxel's points with a MatMul (ORT's ReduceSum over the middle axis was
    # ~2 ms of a ~22 ms network), and equals the mean of the voxel's points
    if det.cfg.vfe.type == "mean":
        import onnxruntime as ort

        assert not any(n.op_type == "ReduceSum" for n in model.graph.node)
        t, c = det.cfg.max_points_per_voxel, det.cfg.vfe.num_point_features
        g = torch.Generator().manual_seed(0)
        num = torch.randint(1, t + 1, (300,), generator=g, dtype=torch.int32)
        vox = torch.rand(300, t, c, generator=g) * (torch.arange(t)[None, :, None] < num[:, None, None])
        vfe = onnx.utils.Extractor(model).extract_model(["voxels", "voxel_num_points"], ["voxel_features"])
        sess = ort.InferenceSession(vfe.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"voxels": vox.numpy(), "voxel_num_points": num.numpy()})[0]
        ref = (vox.double().sum(1) / num[:, None].double()).numpy()
        assert got.shape == (300, c) and np.abs(got - ref).max() < 1e-6
    side = json.loads(res.sidecar_path.read_text())
    assert side["class_names"] == list(det.cfg.class_names)
    assert side["preprocess"]["voxel_size"] == list(det.cfg.voxel_size)
    assert side["postprocess"]["max_output"] == det.cfg.post.nms_post_max


def _re_model(head, attrs, shapes):
    names = ["cls", "box", "dir", "iou", "anchors"] if attrs["head_type"] == "anchor" else ["hm", "reg", "", "iou", ""]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in names if n]
    node = helper.make_node("IoUAwareRedundancyElimination", names, ["boxes", "scores", "labels", "valid_count"],
                            domain=DOMAIN, **attrs)
    m = attrs["max_output"]
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, m, 7]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, m]),
            helper.make_tensor_value_info("labels", TensorProto.INT32, [1, m]),
            helper.make_tensor_value_info("valid_count", TensorProto.INT32, [1])]
    g = helper.make_graph([node], "re", inputs, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


@pytest.mark.parametrize("name", ["second_fast@0.25x", "centerpoint_fast@0.25x"])
@pytest.mark.parametrize("use_re", [False, True])
def test_redundancy_op_equals_pytorch_postprocessing(name, use_re):
    """Random (untied) head outputs through the C++ op and through head.decode + post-processing."""
    import onnxruntime as ort

    cfg = with_iou_branch(get_config(name))
    if use_re:
        cfg = cfg.replace(post=cfg.post.replace(redundancy=RedundancyConfig(score_thresh=0.2, cross_class_thresh=0.2)))
    det = build_detector(cfg).eval()
    head = det.dense_head
    g = torch.Generator().manual_seed(1)
    h, w = 100, 88
    if "center" in name:
        preds = {"hm": torch.randn(1, 3, h, w, generator=g) * 2 - 2, "reg": torch.randn(1, 8, h, w, generator=g) * 0.5,
                 "iou": torch.randn(1, h, w, generator=g), "feature_size": (h, w)}
        feeds = {k: preds[k].numpy() for k in ("hm", "reg", "iou")}
        shapes = {"hm": [1, 3, h, w], "reg": [1, 8, h, w], "iou": [1, h, w]}
    else:
        k = h * w * head.num_anchors
        preds = {"cls": torch.randn(1, k, 3, generator=g) * 2 - 3, "box": torch.randn(1, k, 7, generator=g) * 0.3,
                 "dir": torch.randn(1, k, 2, generator=g), "iou": torch.randn(1, k, generator=g), "feature_size": (h, w)}
        feeds = {n: preds[n].numpy() for n in ("cls", "box", "dir", "iou")}
        feeds["anchors"] = head.anchors((h, w), "cpu").reshape(-1, 7).numpy()
        shapes = {"cls": [1, k, 3], "box": [1, k, 7], "dir": [1, k, 2], "iou": [1, k], "anchors": [k, 7]}
    ref = postprocess(head.decode(preds), cfg.post)[0]
    sess = ort.InferenceSession(_re_model(head, redundancy_attributes(det), shapes).SerializeToString(),
                                sess_options=session_options(1), providers=["CPUExecutionProvider"])
    boxes, scores, labels, count = sess.run(None, feeds)
    n = int(count[0])
    assert n == len(ref["boxes"]) > 5
    np.testing.assert_allclose(boxes[0, :n], ref["boxes"].numpy(), atol=2e-4, rtol=1e-5)
    np.testing.assert_allclose(scores[0, :n], ref["scores"].numpy(), atol=1e-5)
    assert (labels[0, :n] == ref["labels"].numpy()).all()
    assert (labels[0, n:] == -1).all() and (boxes[0, n:] == 0).all()


@pytest.mark.parametrize("name", ["second_fast@0.25x", "centerpoint_fast@0.25x"])
def test_onnxruntime_parity_with_pytorch(trained_students, synth_data, tmp_path, name):
    det = trained_students[name][0]
    res = export_onnx(det, tmp_path / "m.onnx")
    for split in ("train", "val"):
        rep = check_parity(det, res.onnx_path, synth_data, split, threads=2)
        assert rep.boxes > 0, "the trained student must detect something for parity to mean anything"
        assert rep.ok(1e-3) and rep.tied_swaps == 0, rep.summary()
    ok, msg = polygraphy_compare(res.onnx_path, synth_data, "val", frames=2)
    assert ok, msg


def test_runtime_rejects_bad_inputs(trained_students, tmp_path):
    det = trained_students["second_fast@0.25x"][0]
    res = export_onnx(det, tmp_path / "m.onnx")
    sess = OrtSession(res.onnx_path)
    pts = np.random.default_rng(0).uniform([0, -20, -2, 0], [40, 20, 0, 1], (2000, 4)).astype(np.float32)
    with pytest.raises(PointCloudInputError, match=r"shape \(N, 4\)"):
        sess(pts[:, :3])
    with pytest.raises(PointCloudInputError, match="dtype"):
        sess(pts.astype(np.int32))
    bad = pts.copy()
    bad[5, 1] = np.nan
    with pytest.raises(PointCloudInputError, match="1 of 2000 points have NaN"):
        sess(bad)
    empty = sess(np.zeros((0, 4), np.float32))
    assert len(empty.boxes) == 0
    # a cloud that overflows the exported voxel cap is refused, not silently truncated
    dense = np.random.default_rng(1).uniform([0, -40, -3, 0], [70, 40, 1, 1], (400_000, 4)).astype(np.float32)
    with pytest.raises(PointCloudInputError, match="max_voxels"):
        sess(dense)


def test_fp16_export_runs_in_onnx_runtime_with_stated_parity(trained_students, synth_data, tmp_path):
    """--precision fp16: float16 from the first sparse conv to the head (Casts at both ends, float32
    graph inputs/outputs, sparse-conv weights float32), run by ONNX Runtime with the op library's
    float16 kernel; against PyTorch float32 (tolerances fixed before measuring): AP within 0.5, the
    confident boxes matched one to one, centres within 0.05 m and yaw within 0.05 rad (95th pct)."""
    from collections import Counter

    from onnx import TensorProto

    from clean_deploy.quantize.evaluate import box_parity, run_split
    from clean_deploy.runtime.torch_session import TorchSession
    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.train.evaluate import mean_moderate_ap

    det = trained_students["centerpoint_fast@0.25x"][0]
    res = export_onnx(det, tmp_path / "fp16.onnx", precision="fp16")
    model = onnx.load(str(res.onnx_path))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Cast"] >= 3  # one in, one per float input of the redundancy elimination
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT, TensorProto.FLOAT,
                                                                          TensorProto.INT32, TensorProto.INT32]
    halves = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert halves and all("sparse" not in i.name for i in halves)  # dense weights only
    assert json.loads(res.sidecar_path.read_text())["precision"] == "fp16"
    d16, a16 = run_split(res.onnx_path, synth_data, "val", threads=1)
    torch_sess, reader = TorchSession(det, "cpu"), KittiReader(synth_data, "val")
    with torch.no_grad():
        d32 = [torch_sess(reader.read_points(i), reader.read_calib(i)) for i in reader.frame_ids]
    par = box_parity(d32, d16, 0.5, 0.3)
    assert par["boxes_ref"] > 0 and par["matched_share_ref"] >= 0.95, par
    assert par["center_diff_m"]["p95"] <= 0.05 and par["yaw_diff_rad"]["p95"] <= 0.05, par
    fp32 = export_onnx(det, tmp_path / "fp32.onnx")
    _, a32 = run_split(fp32.onnx_path, synth_data, "val", threads=1)
    assert abs(mean_moderate_ap(a16) - mean_moderate_ap(a32)) <= 0.5


def test_axis_heading_student_exports_with_the_same_boxes(synth_data, tmp_path):
    """A '+axis' centre head turns (cos 2t, sin 2t) + direction into (cos t, sin t) inside the
    graph (Sqrt / Where / Mul), so the deployed decoder is unchanged: ONNX Runtime gives PyTorch's
    boxes, headings included. Random weights with the heatmap bias raised, so boxes come out."""
    torch.manual_seed(0)
    det = build_detector(with_iou_branch(get_config("centerpoint_fast@0.25x+axis"))).eval()
    with torch.no_grad():
        det.dense_head.hm[-1].bias.fill_(1.0)
        det.dense_head.dir[-1].weight.mul_(50)  # directions of both signs, far from the tie at 0
    res = export_onnx(det, tmp_path / "m.onnx")
    ops = {n.op_type for n in onnx.load(str(res.onnx_path)).graph.node}
    assert {"Sqrt", "Where"} <= ops
    rep = check_parity(det, res.onnx_path, synth_data, "val", threads=1)
    assert rep.boxes > 20 and rep.ok(1e-3) and rep.tied_swaps == 0, rep.summary()
    # the float16 form does not handle the heading ops yet: refused with the op's name, never half-converted
    from clean_deploy.export.fp16 import Fp16Error, to_fp16

    with pytest.raises(Fp16Error, match="inside the float16 region is not handled"):
        to_fp16(onnx.load(str(res.onnx_path)))
