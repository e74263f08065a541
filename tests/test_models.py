"""Detectors: forward/backward of every family, decoder round trips, FLOPs from rulebook pairs."""
import math

import numpy as np
import pytest
import torch

from clean_deploy.models.config import PostProcessConfig
from clean_deploy.models.detector import build_detector
from clean_deploy.models.flops import count_params, profile_compute, rulebook_pairs
from clean_deploy.models.heads.anchor_head import AnchorHead
from clean_deploy.models.postprocess import postprocess
from clean_deploy.models.sparse import spconv
from clean_deploy.models.zoo import get_config, with_iou_branch

from toy import TOY_BOXES, toy_batch

SMALL = ["second_fast@0.25x", "pointpillars_fast@0.25x", "centerpoint_fast@0.25x", "voxel_rcnn_fast@0.25x"]


@pytest.mark.parametrize("name", SMALL + ["centerpoint_fast@0.25x+axis"])
def test_forward_backward_every_family(name):
    torch.manual_seed(0)
    cfg = with_iou_branch(get_config(name))
    model = build_detector(cfg)
    batch = toy_batch(cfg, 2)
    model.train()
    out = model(batch)
    total, parts = model.loss(out, batch)
    assert torch.isfinite(total) and total.item() > 0
    assert "loss_iou" in parts and parts["loss_iou"] > 0
    if cfg.roi_head is not None:
        assert parts["loss_rcnn_cls"] > 0 and parts["loss_rcnn_reg"] > 0
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    model.eval()
    with torch.no_grad():
        preds = model.predict(model(batch))
    assert len(preds) == 2 and all(p["boxes"].shape[1] == 7 for p in preds)


def test_anchor_head_decode_recovers_targets():
    """Predictions equal to the encoded targets decode (through NMS) to exactly the GT boxes."""
    cfg = get_config("second_fast")
    head = AnchorHead(cfg.dense_head, 8, cfg.class_names, cfg.point_cloud_range)
    h, w = 100, 88
    gt = torch.from_numpy(TOY_BOXES)[None]
    anchors = head.anchors((h, w), "cpu")
    tg = head.assign_targets(anchors, gt)
    labels = tg["labels"][0]
    pos = labels > 0
    assert pos.sum() >= len(TOY_BOXES)  # every GT got at least its forced best anchor
    flat = anchors.reshape(-1, 7)
    cls = torch.full((1, flat.shape[0], 3), -10.0)
    cls[0, pos, labels[pos] - 1] = 10.0
    box = torch.zeros(1, flat.shape[0], 7)
    box[0, pos] = head.coder.encode(tg["matched"][0, pos], flat[pos])
    dir_t = torch.zeros(1, flat.shape[0], 2)
    from clean_deploy.models.heads.losses import direction_target
    dir_t[0, pos, direction_target(tg["matched"][0, pos, 6], cfg.dense_head.dir_offset, 2)] = 5.0
    preds = {"cls": cls, "box": box, "dir": dir_t, "feature_size": (h, w)}
    res = postprocess(head.decode(preds), PostProcessConfig(score_thresh=0.5, nms_thresh=0.5))[0]
    assert len(res["boxes"]) == len(TOY_BOXES)
    order = res["boxes"][:, 0].argsort()
    ref = gt[0, gt[0, :, 0].argsort()]
    torch.testing.assert_close(res["boxes"][order, :6], ref[:, :6], atol=1e-4, rtol=0)
    # heading resolved by the direction classifier, not just modulo pi
    assert torch.allclose(torch.cos(res["boxes"][order, 6] - ref[:, 6]), torch.ones(len(ref)), atol=1e-5)
    assert torch.equal(res["labels"][order], ref[:, 7].long() - 1)


@pytest.mark.parametrize("name,cells", [("centerpoint_fast", (100, 88)), ("centerpoint_fast+up2", (200, 176))])
def test_center_head_decode_recovers_targets(name, cells):
    """'+up2': the head predicts on a 2x finer map (0.4 m cells); the detector's forward makes that map."""
    cfg = get_config(name)
    model = build_detector(cfg)
    head = model.dense_head
    h, w = cells
    assert head.cell_size() == pytest.approx((70.4 / w, 80.0 / h))
    if name.endswith("+up2"):
        batch = toy_batch(cfg, 1)
        with torch.no_grad():
            assert model.eval()(batch)["dense"]["hm"].shape[-2:] == (h, w)
        with pytest.raises(KeyError, match=r"'\+up2' is for centre-head"):
            get_config("second_fast+up2")
    gt = torch.from_numpy(TOY_BOXES)[None]
    tg = head.assign_targets(gt, (h, w))
    assert tg["hm"].eq(1).sum() == len(TOY_BOXES)
    hm = torch.logit(tg["hm"].clamp(1e-4, 1 - 1e-4))
    reg = torch.zeros(1, 8, h * w)
    reg[0, :, tg["ind"][0]] = tg["reg"][0].t()
    preds = {"hm": hm, "reg": reg.view(1, 8, h, w), "feature_size": (h, w)}
    res = postprocess(head.decode(preds), PostProcessConfig(score_thresh=0.9, nms_thresh=0.1))[0]
    order = res["boxes"][:, 0].argsort()
    ref = gt[0, gt[0, :, 0].argsort()]
    assert len(res["boxes"]) == len(TOY_BOXES)
    torch.testing.assert_close(res["boxes"][order, :6], ref[:, :6], atol=1e-4, rtol=0)
    assert torch.allclose(torch.cos(res["boxes"][order, 6] - ref[:, 6]), torch.ones(len(ref)), atol=1e-5)


def test_rulebook_pairs_match_spconv():
    torch.manual_seed(0)
    shape = [20, 21, 19]
    idx = [(torch.rand(n, 3) * torch.tensor(shape)).int().unique(dim=0) for n in (800, 300)]
    coords = torch.cat([torch.cat([torch.full((len(i), 1), b, dtype=torch.int32), i], 1) for b, i in enumerate(idx)])
    x = spconv.SparseConvTensor(torch.randn(len(coords), 4), coords, shape, 2)
    c1 = spconv.SubMConv3d(4, 8, 3, padding=1, indice_key="s1")
    c2 = spconv.SparseConv3d(8, 8, 3, stride=2, padding=1, indice_key="d1")
    c3 = spconv.SparseConv3d(8, 8, (3, 1, 1), stride=(2, 1, 1), padding=0, indice_key="d2")
    y1 = c1(x)
    y2 = c2(y1)
    y3 = c3(y2)
    d = y3.indice_dict
    ours = rulebook_pairs(x.indices, y1.indices, shape, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), True)
    # spconv stores half of the symmetric submanifold offsets and handles the centre separately
    assert ours.sum() == 2 * d["s1"].indice_pair_num.sum() + len(coords)
    ours = rulebook_pairs(y1.indices, y2.indices, y1.spatial_shape, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), False)
    assert torch.equal(ours, d["d1"].indice_pair_num.long())
    ours = rulebook_pairs(y2.indices, y3.indices, y2.spatial_shape, (3, 1, 1), (2, 1, 1), (0, 0, 0), (1, 1, 1), False)
    assert torch.equal(ours, d["d2"].indice_pair_num.long())


def test_compute_profile_and_width_multiplier():
    full, half = get_config("second_fast"), get_config("second_fast@0.5x")
    batch = toy_batch(full, 1)
    pf = profile_compute(build_detector(full), batch)
    ph = profile_compute(build_detector(half), batch)
    kinds = pf.by_kind()
    assert kinds["sparse_conv"] > 0 and kinds["Conv2d"] > 0
    # convs scale ~quadratically with width; heads (fixed outputs) make it a bit less
    assert 0.2 < ph.macs / pf.macs < 0.35
    assert 0.2 < count_params(build_detector(half)) / count_params(build_detector(full)) < 0.35
    # one sparse layer checked by hand: MACs = pairs * Cin * Cout
    first = next(layer for layer in pf.layers if layer.kind == "sparse_conv")
    assert first.macs == first.pairs * 4 * 16
    # activations: the submanifold input layer keeps the voxel set -> V x (16 float32 features + 4 int32 indices)
    assert first.out_bytes == len(batch["voxel_coords"]) * (16 * 4 + 4 * 4)
    dense = [layer for layer in pf.layers if layer.kind == "Conv2d"]
    assert all(layer.out_bytes > 0 and layer.out_bytes % 4 == 0 for layer in dense)
    assert pf.activation_bytes == sum(layer.out_bytes for layer in pf.layers) > pf.max_layer_out_bytes > 0
    assert 0.3 < ph.activation_bytes / pf.activation_bytes < 0.7  # channels halved, head outputs fixed


def test_dense_head_section_names_its_head_and_older_configs_load():
    """DetectorConfig.dense_head is one section whose ``type`` picks the head class; every
    registered head has a parseable config class; a config stored with the older per-head sections
    (anchor_head / center_head, the other null) loads to the same config; a bad type is named."""
    from clean_deploy.models.config import HEAD_CONFIGS, DetectorConfig
    from clean_deploy.models.heads import DENSE_HEADS

    assert sorted(DENSE_HEADS) == HEAD_CONFIGS.names() == ["anchor", "center"]
    for name in ("second_fast", "centerpoint_fast@0.5x+iou", "voxel_rcnn_fast"):
        cfg = get_config(name)
        d = cfg.to_dict()
        assert DetectorConfig.from_dict(d) == cfg
        assert type(build_detector(cfg).dense_head) is DENSE_HEADS[cfg.dense_head.type]
        legacy = {k: v for k, v in d.items() if k != "dense_head"}
        head = {k: v for k, v in d["dense_head"].items() if k != "type"}
        legacy["anchor_head"], legacy["center_head"] = ((head, None) if cfg.dense_head.type == "anchor" else (None, head))
        assert DetectorConfig.from_dict(legacy) == cfg
    center = get_config("centerpoint_fast")
    assert center.dense_head.type == "center" and center.dense_head.iou_branch is False
    assert get_config("centerpoint_fast+iou").dense_head.iou_branch is True
    bad = center.to_dict()
    bad["dense_head"]["type"] = "ssd"
    with pytest.raises(ValueError, match=r"DetectorConfig.dense_head.type must be one of \['anchor', 'center'\], got 'ssd'"):
        DetectorConfig.from_dict(bad)
    both = {**{k: v for k, v in bad.items() if k != "dense_head"}, "anchor_head": {}, "center_head": {}}
    with pytest.raises(ValueError, match="exactly one of"):
        DetectorConfig.from_dict(both)
    with pytest.raises(ValueError, match="anchor classes"):
        get_config("second").replace(class_names=("Car",))


def test_parts_come_from_the_registries():
    """build_detector assembles the parts its config names: a newly registered backbone is used
    without touching the detector; an unknown type names the registered ones; a config written before
    the ``type`` fields existed still loads (defaults) and builds the same state-dict keys."""
    from clean_deploy.models.backbone3d import VoxelBackbone8x
    from clean_deploy.models.config import DetectorConfig
    from clean_deploy.models.registry import BACKBONES_3D, BEV_BACKBONES, VFES

    assert BACKBONES_3D.names() == ["voxel_8x"] and BEV_BACKBONES.names() == ["base_bev"]
    assert VFES.names() == ["mean", "pillar"]

    @BACKBONES_3D.register("test_voxel_8x_tagged")
    class Tagged(VoxelBackbone8x):
        tag = "tagged"

    try:
        cfg = get_config("centerpoint_fast")
        det = build_detector(cfg.replace(backbone3d=cfg.backbone3d.replace(type="test_voxel_8x_tagged")))
        assert det.backbone3d.tag == "tagged"
        ref = build_detector(cfg)
        assert list(det.state_dict()) == list(ref.state_dict())
        with pytest.raises(ValueError, match=r"backbone3d.type must be one of \['test_voxel_8x_tagged', 'voxel_8x'\]"):
            build_detector(cfg.replace(backbone3d=cfg.backbone3d.replace(type="nope")))
        with pytest.raises(ValueError, match="registered twice"):
            BACKBONES_3D.register("voxel_8x")(Tagged)
    finally:
        BACKBONES_3D._entries.pop("test_voxel_8x_tagged")
    old = cfg.to_dict()
    del old["backbone3d"]["type"], old["backbone2d"]["type"]
    assert DetectorConfig.from_dict(old) == cfg


def test_pruned_widths_read_back_through_the_part_contracts():
    """The parts' contracts as pruning and export read them: config_with_widths reproduces an
    unpruned config (pillar VFE, BEV backbone, no 3D backbone), conv_blocks lists the sparse blocks
    in forward order with their module paths, roi_scales the stage outputs' voxel sizes."""
    from clean_deploy.compress.prune.pruner import config_from_modules

    for name in ("pointpillars_fast", "voxel_rcnn_fast"):
        cfg = get_config(name)
        assert config_from_modules(build_detector(cfg)) == cfg
    sp = build_detector(get_config("second"))
    name, block = sp.backbone3d.conv_blocks()[1]
    assert name == "stages.0.1" and block is sp.backbone3d.stages[0][1]
    assert [n for n, _ in sp.backbone3d.conv_blocks()][-1] == "conv_out"
    scales = sp.backbone3d.roi_scales((0.05, 0.05, 0.1))
    assert scales["x_conv1"] == (sp.backbone3d.stage_channels[0], (0.05, 0.05, 0.1))
    assert scales["x_conv4"][1] == pytest.approx((0.4, 0.4, 0.8))


def test_detector_geometry_is_validated():
    """The detector owns range, voxels and classes, so it checks them (the data config no longer has them)."""
    from clean_deploy.models.config import DetectorConfig

    with pytest.raises(ValueError, match=r"point_cloud_range needs 6 numbers .* min < max"):
        DetectorConfig(point_cloud_range=(0, 0, 0, -1, 1, 1))
    with pytest.raises(ValueError, match="voxel_size needs 3 positive numbers"):
        DetectorConfig(voxel_size=(0.1, 0.0, 0.2))
    center = get_config("centerpoint")
    with pytest.raises(ValueError, match="class_names must be unique and non-empty"):
        center.replace(class_names=("Car", "Car"))
    with pytest.raises(ValueError, match="class_names must be unique and non-empty"):
        center.replace(class_names=())


def test_first_stage_boxes_of_a_two_stage_detector():
    """``first_stage``: the dense head's boxes before the RoI head (what the second stage adds is
    the difference); a one-stage detector has none and says so."""
    torch.manual_seed(0)
    cfg = get_config("voxel_rcnn_fast@0.25x")
    model = build_detector(cfg).eval()
    batch = toy_batch(cfg, 2)
    with torch.no_grad():
        out = model(batch)
        first = model.decode(out, first_stage=True)
        dense = model.dense_head.decode(out["dense"])
        refined = model.decode(out)
        preds = model.predict(out, first_stage=True)
    for k in ("boxes", "scores"):
        torch.testing.assert_close(first[k], dense[k], rtol=0, atol=0)
    assert first["boxes"].shape != refined["boxes"].shape or not torch.equal(first["boxes"], refined["boxes"])
    ref = postprocess(dense, cfg.post)
    for p, r in zip(preds, ref):
        torch.testing.assert_close(p["boxes"], r["boxes"], rtol=0, atol=0)
    one = build_detector(get_config("centerpoint_fast@0.25x")).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="only for two-stage detectors"):
        one.decode(one(toy_batch(one.cfg, 1)), first_stage=True)


def test_heading_from_axis_recovers_the_heading():
    """(cos 2t, sin 2t) at any scale + the direction logit -> (cos t, sin t), against atan2 in
    float64; the quarter turns (where sin 2t = 0) included."""
    from clean_deploy.models.heads.center_head import heading_from_axis

    rng = np.random.default_rng(0)
    t = np.concatenate([rng.uniform(-math.pi, math.pi, 2000), [0, math.pi / 2, -math.pi / 2, math.pi, -math.pi + 1e-9]])
    axis = torch.tensor(np.stack([np.cos(2 * t), np.sin(2 * t)]) * rng.uniform(0.1, 3, t.shape))[None]  # (1,2,P)
    half = np.arctan2(np.sin(2 * t), np.cos(2 * t)) / 2  # in (-pi/2, pi/2]
    half = np.where(half > math.pi / 4 + 1e-12, half - math.pi, half)  # the window (-3pi/4, pi/4]
    forward = np.cos(t - half) > 0
    logit = torch.tensor(np.where(forward, 1.0, -1.0) * rng.uniform(0.01, 5, t.shape))[None, None]
    cs = heading_from_axis(axis, logit)[0].numpy()
    err = np.abs(np.angle(np.exp(1j * (np.arctan2(cs[1], cs[0]) - t))))
    assert err.max() < 1e-6, (t[err.argmax()], err.max())
    # the opposite logit turns it by pi
    cs2 = heading_from_axis(axis, -logit)[0].numpy()
    np.testing.assert_allclose(cs2, -cs, atol=1e-12)
    # the forward/backward cut sits at pi/4, away from cars seen along (0, pi) or across (+-pi/2) the
    # road: a little noise around those headings never changes which way is "forward"
    for base in (0.0, math.pi / 2, math.pi, -math.pi / 2):
        tt = base + rng.normal(0, 0.05, 200)
        ax = torch.tensor(np.stack([np.cos(2 * tt), np.sin(2 * tt)]))[None]
        a = heading_from_axis(ax, torch.ones(1, 1, len(tt), dtype=torch.float64))[0].numpy()  # "forward"
        assert len(set(a[0] * np.cos(tt) + a[1] * np.sin(tt) > 0)) == 1, base


def test_axis_heading_head_learns_the_axis_and_decodes_its_targets():
    """'+axis' centre head: predictions equal to its targets (axis channels, direction logit of the
    right sign) decode to the GT boxes; the regression loss is then zero and stays zero for a
    heading turned by pi (the axis target does not see front/back), while the direction loss
    grows."""
    cfg = get_config("centerpoint_fast@0.25x+axis")
    det = build_detector(cfg).eval()
    head = det.dense_head
    assert head.dir is not None and cfg.dense_head.loss_weights.dir == 0.2
    h, w = 100, 88
    gt = torch.from_numpy(TOY_BOXES)[None].clone()
    gt[0, :, 6] = torch.tensor([0.0, math.pi / 2, -2.9, 1.2, -math.pi / 2, 3.0][: gt.shape[1]])
    t = head.assign_targets(gt, (h, w))
    ind, mask = t["ind"][0][t["mask"][0]], t["mask"][0]
    c, s = t["reg"][0, mask, 6], t["reg"][0, mask, 7]
    raw = torch.zeros(1, 8, h * w)
    raw[0, :6, ind] = t["reg"][0, mask, :6].T
    raw[0, 6, ind], raw[0, 7, ind] = c * c - s * s, 2 * c * s
    from clean_deploy.models.heads.center_head import heading_from_axis

    half = heading_from_axis(raw[:, 6:8], torch.ones(1, 1, h * w))
    d = torch.full((1, h * w), -8.0)
    d[0, ind] = torch.where(half[0, 0, ind] * c + half[0, 1, ind] * s > 0, 8.0, -8.0)
    hm = torch.full((1, 3, h * w), -10.0)
    hm[0, t["classes"][0, mask] - 1, ind] = 10.0
    preds = {"hm": hm.view(1, 3, h, w), "reg_raw": raw.view(1, 8, h, w), "dir": d.view(1, h, w), "feature_size": (h, w),
             "reg": torch.cat([raw[:, :6], heading_from_axis(raw[:, 6:8], d[:, None])], 1).view(1, 8, h, w)}
    dec = head.decode(preds, top_k=int(mask.sum()))
    got = dec["boxes"][0]
    ref = gt[0, :, :7][mask]
    order = [int((got[:, :2] - r[:2]).norm(dim=1).argmin()) for r in ref]
    yaw_err = torch.atan2(torch.sin(got[order, 6] - ref[:, 6]), torch.cos(got[order, 6] - ref[:, 6])).abs()
    assert yaw_err.max() < 1e-5 and (got[order, :6] - ref[:, :6]).abs().max() < 1e-4
    parts = head.loss(preds, gt)
    assert parts["loss_box"] < 1e-5 and parts["loss_dir"] < 0.01
    turned = gt.clone()
    turned[0, :, 6] += math.pi
    parts2 = head.loss(preds, turned)
    assert parts2["loss_box"] < 1e-5 and parts2["loss_dir"] > 1.0


def test_default_centre_head_has_no_direction_branch():
    cfg = get_config("centerpoint_fast@0.25x")
    with pytest.raises(ValueError, match="needs loss_weights.dir > 0"):
        build_detector(cfg.replace(dense_head=cfg.dense_head.replace(heading="axis")))
    head = build_detector(cfg).dense_head
    assert head.dir is None and "loss_dir" not in head.loss(head(torch.zeros(1, head.shared[0].in_channels, 8, 8)),
                                                            torch.zeros(1, 1, 8))
    with pytest.raises(KeyError, match="'\\+axis' is for centre-head detectors"):
        get_config("second_fast+axis")


def test_config_scalars_must_have_their_type():
    """A JSON/CLI value of the wrong scalar type is refused with the field's name instead of being
    kept: the string "false" in a bool field would otherwise be silently true."""
    from clean_deploy.compress.config import DistillConfig
    from clean_deploy.config import TrainConfig

    with pytest.raises(ValueError, match=r"DistillConfig.la_class_aware: expected bool, got str 'false'"):
        DistillConfig.from_dict({"la_class_aware": "false"})
    with pytest.raises(ValueError, match=r"TrainConfig.epochs: expected int, got bool"):
        TrainConfig.from_dict({"epochs": True})
    with pytest.raises(ValueError, match=r"TrainConfig.lr: expected float, got str"):
        TrainConfig.from_dict({"lr": "1e-3"})  # what YAML 1.1 makes of 1e-3
    with pytest.raises(ValueError, match=r"DistillConfig.la_target: expected str, got int"):
        DistillConfig.from_dict({"la_target": 1})
    got = TrainConfig.from_dict({"lr": 1, "epochs": 3})  # an int is a float
    assert got.lr == 1.0 and type(got.lr) is float and got.epochs == 3
    assert DistillConfig.from_dict({"class_weights": [1, 2, 2]}).class_weights == (1.0, 2.0, 2.0)
