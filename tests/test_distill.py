"""CaKD terms: each is zero when the student matches the teacher and positive otherwise; the
combined loss trains heterogeneous pairs (anchor/center/pillar students from a two-stage teacher)."""
import math

import numpy as np
import pytest
import torch

from clean_deploy.compress.config import DistillConfig
from clean_deploy.compress.distill.cakd import CaKDLoss
import torch.nn.functional as F

from clean_deploy.compress.distill.feature_kd import FeatureAdapter, masked_feature_loss
from clean_deploy.compress.distill.label_assignment import add_teacher_boxes, distilled_targets
from clean_deploy.compress.distill.masks import foreground_mask
from clean_deploy.compress.distill.response_kd import bernoulli_kl, masked_response_loss
from clean_deploy.compress.distill.student_oriented import select_student_candidates, student_oriented_loss
from clean_deploy.models.detector import build_detector
from clean_deploy.models.zoo import get_config, with_iou_branch

from toy import TOY_BOXES, toy_batch


def test_feature_and_response_losses_zero_iff_equal():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 8, 10, 12, generator=g)
    mask = torch.rand(2, 10, 12, generator=g)
    assert masked_feature_loss(f, f, mask).item() == 0.0
    assert masked_feature_loss(f + 0.1, f, mask).item() == pytest.approx(0.01, rel=1e-5)
    z = torch.randn(2, 3, 10, 12, generator=g)
    assert masked_response_loss(z, z, mask).abs().item() < 1e-6
    assert masked_response_loss(z + 0.5, z, mask).item() > 1e-3
    # masked: a difference only where the mask is 0 costs nothing
    m0 = torch.zeros_like(mask)
    m0[:, :5] = 1
    z2 = z.clone()
    z2[:, :, 5:] += 3
    assert masked_response_loss(z2, z, m0).abs().item() < 1e-6
    assert bernoulli_kl(torch.tensor([0.0]), torch.tensor([0.5])).abs().item() < 1e-7


def test_masked_feature_loss_value_and_gradient_match_the_formula():
    """The fused loss equals sum(mask * mean_c (s - t)^2) / sum(mask) computed by plain torch, and
    so does its gradient (float64, and torch.autograd.gradcheck); the teacher gets none."""
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 5, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 4, 6, generator=g, dtype=torch.float64)
    mask[0, :2] = 0.0
    ref = ((s - t.detach()).pow(2).mean(1) * mask).sum() / mask.sum()
    (g_ref,) = torch.autograd.grad(ref, s)
    out = masked_feature_loss(s, t, mask)
    g_s, g_t = torch.autograd.grad(out, [s, t], allow_unused=True)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(g_s, g_ref, rtol=1e-12, atol=1e-15)
    assert g_t is None
    assert torch.autograd.gradcheck(lambda x: masked_feature_loss(x, t, mask), (s,))
    # a second backward through a retained graph gives the same gradient (nothing saved is mutated)
    out = masked_feature_loss(s, t, mask)
    out.backward(retain_graph=True)
    first = s.grad.clone()
    s.grad = None
    out.backward()
    assert torch.equal(s.grad, first)
    with pytest.raises(ValueError, match="must be"):
        masked_feature_loss(s, t[:, :4], mask)


@pytest.mark.parametrize("src,dst", [((5, 4), (10, 8)), ((7, 5), (10, 8)), ((10, 8), (6, 3)), ((6, 7), (6, 7))])
def test_feature_adapter_equals_resize_then_project(src, dst):
    """The adapter projects on the coarser grid (resizing after or before); that equals resizing first and
    projecting (the composition it replaces), values and gradients of input, weight and bias,
    in float64, for up-, down-, non-integer and no resizing."""
    g = torch.Generator().manual_seed(2)
    ad = FeatureAdapter(3, 5).double()
    with torch.no_grad():
        ad.proj.bias.copy_(torch.randn(5, generator=g, dtype=torch.float64))
    x = torch.randn(2, 3, *src, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 5, *dst, generator=g, dtype=torch.float64)
    out = ad(x, dst)
    xr = F.interpolate(x, size=dst, mode="bilinear", align_corners=False) if src != dst else x
    ref = ad.proj(xr)
    assert out.shape == ref.shape == (2, 5, *dst) and out.is_contiguous()
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
    params = [x, ad.proj.weight, ad.proj.bias]
    got = torch.autograd.grad((out * up).sum(), params)
    want = torch.autograd.grad((ref * up).sum(), params)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-11, atol=1e-12)
    # laid out like a channels-last teacher map: the same values, and the same feature loss
    cl = ad(x, dst, torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.allclose(cl, ref, rtol=1e-12, atol=1e-12)
    t = up.contiguous(memory_format=torch.channels_last)
    mask = torch.rand(2, *dst, generator=g, dtype=torch.float64)
    assert masked_feature_loss(cl, t, mask).item() == pytest.approx(masked_feature_loss(out, up, mask).item(), rel=1e-12)


def test_score_boxes_valid_rows_only(pair):
    """score_boxes with a validity mask runs the second stage on the valid boxes alone: their
    confidences and refined boxes equal those of the unmasked call; the others get 0 and their box."""
    teacher = pair
    batch = toy_batch(teacher.cfg, 2)
    g = torch.Generator().manual_seed(3)
    rois = torch.cat([torch.rand(2, 6, 3, generator=g) * torch.tensor([20.0, 10.0, 1.0]) + torch.tensor([5.0, -5.0, -2.0]),
                      torch.rand(2, 6, 3, generator=g) * 2 + 0.5, torch.rand(2, 6, 1, generator=g) * 3], -1)
    valid = torch.tensor([[True, False, True, True, False, False], [False, True, True, False, True, False]])
    with torch.no_grad():
        t_out = teacher(batch)
        q_all, r_all = teacher.roi_head.score_boxes(t_out["sparse"], rois)
        q, r = teacher.roi_head.score_boxes(t_out["sparse"], rois, valid)
        q_none, r_none = teacher.roi_head.score_boxes(t_out["sparse"], rois, torch.zeros_like(valid))
    assert torch.allclose(q[valid], q_all[valid], atol=1e-5) and torch.allclose(r[valid], r_all[valid], atol=1e-4)
    assert (q[~valid] == 0).all() and torch.equal(r[~valid], rois[~valid])
    assert q_all[valid].min() > 100 * 1e-5  # the comparison is not between values within the tolerance of 0
    assert (q_none == 0).all() and torch.equal(r_none, rois)
    with pytest.raises(ValueError, match=r"valid must be \(N,R\)"):
        teacher.roi_head.score_boxes(t_out["sparse"], rois, valid[:, :3])


def test_foreground_mask_is_category_aware():
    gt = torch.from_numpy(TOY_BOXES)[None]
    rng = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
    m = foreground_mask(gt, None, rng, (100, 88), (1.0, 2.0, 3.0), 0.01, 0.0, 0.5)
    assert m.shape == (1, 100, 88)
    # cell of the car centre (12, 3) weighs 1, the cyclist (15, 7) 3, far background 0.01
    cell = lambda x, y: (int((y + 40) / 0.8), int(x / 0.8))  # noqa: E731
    assert m[0][cell(12.0, 3.0)] == 1.0 and m[0][cell(15.0, 7.0)] == 3.0 and m[0][cell(60.0, -30.0)] == 0.01


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    teacher = build_detector(get_config("voxel_rcnn_fast@0.25x")).eval()
    return teacher


def test_student_oriented_zero_when_student_matches_teacher(pair):
    teacher = pair
    cfg = get_config("second_fast@0.25x")
    student = build_detector(cfg).eval()
    batch = toy_batch(cfg, 1)
    with torch.no_grad():
        t_out = teacher(batch)
        decoded = student.dense_head.decode(student(batch)["dense"])
    decoded["scores"] = torch.rand_like(decoded["scores"])  # untrained student: make candidates exist
    rois, index, valid = select_student_candidates(decoded, 0.5, 0.3, 16)
    assert valid.sum() == 16
    q, _ = teacher.roi_head.score_boxes(t_out["sparse"], rois)
    logits = torch.zeros_like(decoded["scores"])
    logits[0, index[0]] = torch.logit(q[0].clamp(1e-6, 1 - 1e-6))
    decoded["logits"] = logits
    assert student_oriented_loss(decoded, teacher, t_out, 0.5, 0.3, 16).abs().item() < 1e-5
    decoded["logits"] = logits + 1.0
    assert student_oriented_loss(decoded, teacher, t_out, 0.5, 0.3, 16).item() > 1e-3


@pytest.mark.parametrize("name", ["second_fast@0.25x", "centerpoint_fast@0.25x"])
def test_label_assignment_reduces_to_plain_targets_for_perfect_quality(name):
    cfg = get_config(name)
    student = build_detector(cfg).train()
    batch = toy_batch(cfg, 2)
    out = student(batch)
    gt = batch["gt_boxes"]
    plain, _ = student.loss(out, batch)
    perfect = distilled_targets(student.dense_head, out["dense"], gt, torch.ones(gt.shape[:2]), 0.0, 1.0)
    same, _ = student.loss(out, batch, perfect)
    assert same.item() == pytest.approx(plain.item(), rel=1e-5)
    # uneven teacher quality (weights are normalised to mean 1, so it must vary to matter)
    q = torch.linspace(0.2, 1.0, gt.shape[0] * gt.shape[1]).view(gt.shape[:2])
    lowq = distilled_targets(student.dense_head, out["dense"], gt, q, 0.5, 1.0)
    assert abs(student.loss(out, batch, lowq)[0].item() - plain.item()) > 1e-3


def test_add_teacher_boxes_only_adds_unexplained_confident_boxes():
    gt = torch.from_numpy(TOY_BOXES)[None]
    det = {"boxes": torch.tensor([[12.1, 3.0, -0.95, 3.9, 1.6, 1.5, 0.2], [30.0, -10.0, -0.9, 4.0, 1.7, 1.5, 0.0],
                                  [40.0, 10.0, -0.9, 4.0, 1.7, 1.5, 0.0]]),
           "scores": torch.tensor([0.95, 0.9, 0.5]), "labels": torch.tensor([0, 0, 0])}
    out = add_teacher_boxes(gt, [det], 0.8)
    assert out.shape == (1, len(TOY_BOXES) + 1, 8)
    assert torch.allclose(out[0, -1], torch.tensor([30.0, -10.0, -0.9, 4.0, 1.7, 1.5, 0.0, 1.0]))


@pytest.mark.parametrize("name", ["second_fast@0.25x", "centerpoint_fast@0.25x", "pointpillars_fast@0.25x",
                                  "centerpoint_fast@0.25x+axis", "centerpoint_fast@0.25x+axis+up2"])
def test_cakd_trains_heterogeneous_students(pair, name):
    teacher = pair
    cfg = with_iou_branch(get_config(name))
    student = build_detector(cfg).train()
    loss = CaKDLoss(teacher, student, DistillConfig(so_score_thresh=0.0))
    batch = toy_batch(cfg, 2)
    total, parts = loss(student, batch)
    for k in ("kd_feature", "kd_response", "kd_student_oriented", "loss_cls", "loss_box", "loss_iou"):
        assert k in parts and math.isfinite(parts[k]), k
    assert parts["kd_feature"] > 0 and parts["kd_response"] > 0 and parts["kd_student_oriented"] > 0
    if "+axis" in name:  # the direction logit is learnt under CaKD too
        assert math.isfinite(parts["loss_dir"]) and parts["loss_dir"] > 0
    total.backward()
    assert loss.adapter.proj.weight.grad is not None and loss.adapter.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


# ------------------------------------------------------------------ direction of every KD term
def test_soft_peak_targets_rise_with_teacher_quality_and_vanish_when_matched():
    from clean_deploy.models.heads.losses import centernet_focal_loss

    cfg = get_config("centerpoint_fast@0.25x")
    student = build_detector(cfg).train()
    batch = toy_batch(cfg, 1)
    out = student(batch)
    gt = batch["gt_boxes"]
    q = torch.linspace(0.2, 0.9, gt.shape[1]).view(1, -1)
    t = distilled_targets(student.dense_head, out["dense"], gt, q, 0.5, 1.0)
    m = t["mask"][0]
    peak, wgt = t["peak_target"][0][m], t["obj_weight"][0][m]
    assert m.sum() >= 3
    assert torch.all(peak[1:] > peak[:-1]) and torch.all(wgt[1:] > wgt[:-1])  # higher quality -> higher
    assert torch.allclose(peak, q[0][m].sqrt())  # iou_match^0.5 * q^0.5 with iou_match = 1 at the peak
    # the classification term at a peak is zero exactly when the student's probability is the target
    target = torch.zeros(1, 1, 5, 5)
    target[0, 0, 2, 2] = 1.0
    soft = torch.full_like(target, 0.36)
    logits = torch.full_like(target, -20.0)
    logits[0, 0, 2, 2] = torch.logit(torch.tensor(0.36))
    one = torch.tensor(1.0)
    assert centernet_focal_loss(logits, target, one, peak_value=soft).item() < 1e-6
    for p in (0.1, 0.6, 0.9):
        logits[0, 0, 2, 2] = torch.logit(torch.tensor(p))
        assert centernet_focal_loss(logits, target, one, peak_value=soft).item() > 1e-4
    # y = 1 is CenterNet's positive term
    torch.testing.assert_close(centernet_focal_loss(logits, target, one, peak_value=torch.ones_like(target)),
                               centernet_focal_loss(logits, target, one))


def test_anchor_soft_targets_rise_with_teacher_quality():
    cfg = get_config("second_fast@0.25x")
    student = build_detector(cfg).train()
    batch = toy_batch(cfg, 1)
    out = student(batch)
    gt = batch["gt_boxes"]
    lo = distilled_targets(student.dense_head, out["dense"], gt, torch.full(gt.shape[:2], 0.3), 0.5, 1.0)
    hi = distilled_targets(student.dense_head, out["dense"], gt, torch.full(gt.shape[:2], 0.8), 0.5, 1.0)
    pos = lo["labels"] > 0
    assert pos.sum() > 0
    assert torch.all(hi["cls_soft"][pos] > lo["cls_soft"][pos])


def test_normalised_weight_per_group_against_brute_force():
    from clean_deploy.models.heads.losses import normalised_weight

    g = torch.Generator().manual_seed(0)
    w = torch.rand(3, 7, generator=g) + 0.1
    groups = torch.randint(0, 4, (3, 7), generator=g)
    mask = torch.rand(3, 7, generator=g) > 0.3
    got = normalised_weight(w, mask, groups)
    for k in groups.unique().tolist():
        sel = mask & (groups == k)
        if sel.any():
            ref = w[groups == k] / w[sel].mean()
            torch.testing.assert_close(got[groups == k], ref)
            assert got[sel].mean().item() == pytest.approx(1.0)
    # without groups: the batch-wide mean (as before)
    torch.testing.assert_close(normalised_weight(w, mask), w / w[mask].mean())


@pytest.mark.parametrize("name", ["centerpoint_fast@0.25x", "second_fast@0.25x"])
def test_class_norm_keeps_box_weight_from_moving_between_classes(name):
    """Low-quality classes (pedestrians: the teacher's quality is lower) lose box-loss weight to the
    others with a batch-wide normalisation; ``class_norm`` keeps each class's mean weight at 1 and
    the order within a class."""
    cfg = get_config(name)
    student = build_detector(cfg).train()
    # two cars and two pedestrians, so that both classes' means are over objects of different quality
    boxes = np.concatenate([TOY_BOXES, np.array([[25.0, 4.0, -0.85, 0.7, 0.6, 1.7, 1.0, 2]], np.float32)])
    batch = toy_batch(cfg, 1, boxes=boxes)
    out = student(batch)
    gt = batch["gt_boxes"]
    cls = gt[..., 7]
    q = torch.where(cls == 1, 0.8, 0.3) * torch.linspace(0.6, 1.0, gt.shape[1]).view(1, -1)
    assert (cls == 1).sum() == 2 and (cls == 2).sum() == 2
    key, pos_of = (("obj_weight", lambda t: t["mask"]) if "centerpoint" in name else ("box_weight", lambda t: t["labels"] > 0))
    cls_of = (lambda t: t["classes"]) if "centerpoint" in name else (lambda t: t["labels"])
    batch_wide = distilled_targets(student.dense_head, out["dense"], gt, q, 0.5, 1.0)
    per_class = distilled_targets(student.dense_head, out["dense"], gt, q, 0.5, 1.0, class_norm=True)
    for t, low_below_one in ((batch_wide, True), (per_class, False)):
        pos, c, w = pos_of(t), cls_of(t), t[key]
        m2 = w[pos & (c == 2)].mean().item()
        assert (m2 < 0.8) if low_below_one else (m2 == pytest.approx(1.0, rel=1e-5))
        if not low_below_one:
            assert w[pos & (c == 1)].mean().item() == pytest.approx(1.0, rel=1e-5)
    # within a class the order (and ratios) of the weights are the batch-wide ones
    pos, c = pos_of(per_class), cls_of(per_class)
    for k in (1, 2):
        sel = pos & (c == k)
        assert len(set(per_class[key][sel].tolist())) > 1  # the quality still ranks the class's objects
        torch.testing.assert_close(per_class[key][sel] / per_class[key][sel][0],
                                   batch_wide[key][sel] / batch_wide[key][sel][0])
    assert torch.isfinite(per_class[key]).all()  # padding / ignored entries included


def test_normalised_weight_leaves_an_empty_group_as_is():
    from clean_deploy.models.heads.losses import normalised_weight

    w = torch.tensor([0.5, 2.0, 3.0, 4.0])
    groups = torch.tensor([0, 1, 1, 2])
    mask = torch.tensor([False, True, True, False])  # groups 0 and 2 have no masked entry
    torch.testing.assert_close(normalised_weight(w, mask, groups), torch.tensor([0.5, 0.8, 1.2, 4.0]))


@pytest.mark.parametrize("flag", [False, True])
def test_cakd_passes_la_class_norm_to_the_label_assignment(pair, monkeypatch, flag):
    import clean_deploy.compress.distill.cakd as cakd_mod

    seen = []
    real = cakd_mod.distilled_targets

    def spy(*a, **k):
        seen.append(k.get("class_norm"))
        return real(*a, **k)

    monkeypatch.setattr(cakd_mod, "distilled_targets", spy)
    cfg = get_config("centerpoint_fast@0.25x")
    student = build_detector(cfg).train()
    total, parts = CaKDLoss(pair, student, DistillConfig(la_class_norm=flag))(student, toy_batch(cfg, 1))
    assert seen == [flag] and math.isfinite(float(total))


def test_class_aware_quality_scales_with_the_teachers_class_probability(pair):
    from clean_deploy.compress.distill.label_assignment import teacher_class_probability, teacher_gt_quality

    teacher = pair
    batch = toy_batch(teacher.cfg, 1)
    with torch.no_grad():
        t_out = teacher(batch)
    gt = batch["gt_boxes"]
    plain = teacher_gt_quality(teacher, t_out, gt)
    aware = teacher_gt_quality(teacher, t_out, gt, class_aware=True)
    p = teacher_class_probability(teacher, t_out, gt)
    valid = gt[..., 7] > 0
    assert torch.all((p[valid] > 0) & (p[valid] < 1))
    torch.testing.assert_close(aware, plain * p)
    # a teacher more sure of the GT classes everywhere gives a higher class-aware quality
    sure = {**t_out, "dense": {k: v for k, v in t_out["dense"].items()}}
    key = "hm" if "hm" in sure["dense"] else "cls"
    sure["dense"][key] = sure["dense"][key] + 2.0
    assert torch.all(teacher_class_probability(teacher, sure, gt)[valid] > p[valid])


def test_distill_seed_fixes_the_student_init_as_plain_training_does(pair, tmp_path, monkeypatch):
    """``distill`` with seed k starts from the weights ``Trainer`` builds for seed k (paired seeds in
    the ablation), whatever the global RNG did before."""
    from clean_deploy.compress.distill import run as distill_run
    from clean_deploy.config import TrainConfig
    from clean_deploy.models.checkpoint import save_checkpoint

    cfg = with_iou_branch(get_config("centerpoint_fast@0.25x"))
    teacher_ckpt = tmp_path / "teacher.pth"
    save_checkpoint(teacher_ckpt, pair, pair.cfg)
    seen = []

    class Capture:
        def __init__(self, det_cfg, train_cfg, data_root, run_dir, *, model=None, **kw):
            seen.append({k: v.clone() for k, v in model.state_dict().items()})
            self.dist = type("D", (), {"device": torch.device("cpu")})()

        def fit(self):
            return None

    monkeypatch.setattr(distill_run, "Trainer", Capture)
    for junk in (3, 17):
        torch.manual_seed(junk)
        torch.rand(junk)  # different RNG history before each call
        distill_run.distill(teacher_ckpt, cfg, tmp_path, tmp_path / f"run{junk}", TrainConfig(seed=5))
    torch.manual_seed(5)
    plain = build_detector(cfg).state_dict()  # what Trainer builds for seed 5 on rank 0
    for state in seen:
        assert state.keys() == plain.keys()
        assert all(torch.equal(state[k], plain[k]) for k in plain)


@pytest.mark.parametrize("backend", ["spconv", "clean_deploy"])
def test_frozen_teacher_folds_batchnorm_and_predicts_the_same(backend):
    """CaKD's teacher runs as ``frozen_for_inference``: the BNs of the sparse backbone, BEV
    backbone and dense head folded into their convs. Its outputs (dense maps, BEV features, sparse
    features the RoI head pools, RoI-head scores of given boxes) equal the unfolded teacher's to
    float rounding, on both sparse backends; the caller's teacher is left as it was."""
    from behaviour import fixed_weights  # BN statistics far from identity, so a wrong fold shows

    from clean_deploy.models.fold import frozen_for_inference
    from clean_deploy.models.sparse import use_sparse_backend

    teacher = fixed_weights(build_detector(get_config("voxel_rcnn_fast@0.25x"))).eval()
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in teacher.modules())
    frozen = frozen_for_inference(teacher)
    left = [n for n, m in frozen.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(n.startswith("roi_head.") for n in left) and len(left) < n_bn
    assert sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in teacher.modules()) == n_bn
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in teacher.parameters())
    batch = toy_batch(teacher.cfg, 2)
    rois = torch.tensor([[[12.0, 3.0, -1.0, 3.9, 1.6, 1.5, 0.3], [15.0, 7.0, -1.0, 1.8, 0.6, 1.7, 1.0]]] * 2)
    with torch.no_grad(), use_sparse_backend(backend):
        a, b = teacher(batch), frozen(batch)
        pairs = [(a["dense"][k], b["dense"][k]) for k in a["dense"] if torch.is_tensor(a["dense"][k])]
        pairs += [(a["spatial_features_2d"], b["spatial_features_2d"]), (a["sparse"]["x_conv4"].features,
                                                                          b["sparse"]["x_conv4"].features)]
        pairs.append((teacher.roi_head.score_boxes(a["sparse"], rois)[0], frozen.roi_head.score_boxes(b["sparse"], rois)[0]))
    for x, y in pairs:
        assert x.shape == y.shape
        assert (x - y).abs().max().item() <= 1e-5 * max(1.0, x.abs().max().item())
    # the fold really changed the modules' weights (a no-op fold would also pass the comparison)
    assert not torch.equal(frozen.backbone2d.blocks[0][0][0].weight, teacher.backbone2d.blocks[0][0][0].weight)


def test_cakd_student_reuses_the_teachers_rulebooks_with_the_same_result(pair, monkeypatch):
    """Teacher and student on the same voxels: the student's sparse convs take the rulebooks the
    teacher's forward built (no build of its own) and the loss and every gradient are bitwise
    those of a student that builds its own."""
    import clean_deploy.compress.distill.cakd as cakd_mod
    import clean_deploy.models.sparse_ops as sparse_ops
    from clean_deploy.models.sparse import use_sparse_backend

    cfg = with_iou_branch(get_config("centerpoint_fast@0.25x+axis"))
    torch.manual_seed(1)
    student = build_detector(cfg).train()
    loss = CaKDLoss(pair, student, DistillConfig(so_score_thresh=0.0))
    batch = toy_batch(cfg, 2)
    builds = []
    real_build = sparse_ops.build_rulebook

    def counting(*a, **k):
        builds.append(torch.is_grad_enabled())  # teacher: no grad; student: grad
        return real_build(*a, **k)

    monkeypatch.setattr(sparse_ops, "build_rulebook", counting)

    def run():
        student.zero_grad(set_to_none=True)
        loss.adapter.zero_grad(set_to_none=True)
        torch.manual_seed(2)
        with use_sparse_backend("clean_deploy"):
            total, _ = loss(student, batch)
        total.backward()
        return total.detach(), {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}

    shared_total, shared_grads = run()
    n_layers = sum(1 for m in student.backbone3d.modules() if hasattr(m, "indice_key"))
    assert n_layers > 0 and builds and not any(builds), builds  # only the teacher built rulebooks
    builds.clear()
    monkeypatch.setattr(cakd_mod, "shared_rulebooks", lambda x: {})
    own_total, own_grads = run()
    assert sum(builds) > 0  # the student now builds its own
    assert torch.equal(shared_total, own_total)
    assert shared_grads.keys() == own_grads.keys() and len(own_grads) > 0
    assert all(torch.equal(shared_grads[k], own_grads[k]) for k in own_grads)


def test_shared_rulebooks_keep_only_ours_and_a_different_geometry_rebuilds():
    """Only our backend's rulebooks are shared (spconv reuses an entry by key alone); a layer whose
    geometry differs from the shared rulebook's builds its own and convolves correctly."""
    from clean_deploy.models.sparse import shared_rulebooks
    from clean_deploy.models.sparse_ops import build_rulebook
    import spconv.pytorch as spconv

    idx = torch.tensor([[0, 1, 1, 1], [0, 1, 2, 1], [0, 2, 2, 2]], dtype=torch.int32)
    rb = build_rulebook(idx, (4, 4, 4), 3, 1, 1, 1, subm=True)
    x = spconv.SparseConvTensor(torch.ones(3, 2), idx, [4, 4, 4], 1,
                                indice_dict={"clean_deploy:subm1": rb, "subm1": object(), "clean_deploy:vol": 1})
    assert shared_rulebooks(x) == {"clean_deploy:subm1": rb}
    from clean_deploy.models.sparse import SubMConv3d, use_sparse_backend

    torch.manual_seed(0)
    conv = SubMConv3d(2, 3, kernel_size=1, bias=False, indice_key="subm1")  # geometry of its own
    feats = torch.randn(3, 2)
    with use_sparse_backend("clean_deploy"):
        got = conv(spconv.SparseConvTensor(feats, idx, [4, 4, 4], 1, indice_dict=shared_rulebooks(x)))
    assert torch.allclose(got.features, feats @ conv.weight.reshape(3, 2).T, atol=1e-6)  # a 1x1x1 conv
    assert got.indice_dict["clean_deploy:subm1"] is not rb


# ------------------------------------------------- label assignment in the IoU branch (la_target)
def _iou_branch_case(name):
    cfg = get_config(name + "+iou")
    student = build_detector(cfg).train()
    boxes = np.concatenate([TOY_BOXES, np.array([[25.0, 4.0, -0.85, 0.7, 0.6, 1.7, 1.0, 2]], np.float32)])
    batch = toy_batch(cfg, 1, boxes=boxes)
    out = student(batch)
    return student, batch, out, batch["gt_boxes"]


def _iou_logits_at_positives(name, student, out, t):
    """The IoU branch's logits at the positives, read from the raw output independently of the loss."""
    if "centerpoint" in name:
        n, _, h, w = out["dense"]["reg"].shape
        return out["dense"]["iou"].reshape(n, h * w).gather(1, t["ind"])[t["mask"]], t["mask"]
    return out["dense"]["iou"][t["labels"] > 0], t["labels"] > 0


@pytest.mark.parametrize("name", ["centerpoint_fast@0.25x", "second_fast@0.25x"])
def test_iou_branch_target_carries_the_teachers_quality_and_nothing_else(name):
    """la_target='iou_branch': classification and regression losses are the plain ones to the bit,
    and the IoU branch learns iou^alpha * quality^(1-alpha): with alpha = 0 exactly the teacher's
    quality (checked against a BCE computed here from the raw logits); higher quality -> higher
    target; alpha = 1 is the plain IoU loss."""
    student, batch, out, gt = _iou_branch_case(name)
    plain = student.dense_head.loss(out["dense"], gt)
    q = torch.linspace(0.2, 0.9, gt.shape[1]).view(1, -1)
    t = distilled_targets(student.dense_head, out["dense"], gt, q, 0.0, 1.0, target="iou_branch")
    assert not ({"peak_target", "obj_weight", "cls_soft", "box_weight"} & set(t))
    got = student.dense_head.loss(out["dense"], gt, t)
    for k in plain:
        if k != "loss_iou":
            torch.testing.assert_close(got[k], plain[k], rtol=0, atol=0)
    logits, pos = _iou_logits_at_positives(name, student, out, t)
    q_pos = q.expand_as(t["mask"])[pos] if "centerpoint" in name else q.gather(1, t["gt_index"].clamp(min=0))[pos]
    norm = pos.sum().float()
    assert len(set(q_pos.tolist())) >= 3  # several objects of different quality
    ref = F.binary_cross_entropy_with_logits(logits, q_pos, reduction="sum") / norm
    torch.testing.assert_close(got["loss_iou"], ref * student.dense_head.cfg.loss_weights.iou)
    # direction: a target rises with the teacher's quality
    hi = distilled_targets(student.dense_head, out["dense"], gt, (q + 0.1).clamp(max=1), 0.5, 1.0, target="iou_branch")
    lo = distilled_targets(student.dense_head, out["dense"], gt, q, 0.5, 1.0, target="iou_branch")
    assert torch.all(hi["iou_teacher"] >= lo["iou_teacher"]) and torch.any(hi["iou_teacher"] > lo["iou_teacher"])
    # alpha = 1: the teacher's factor is 1, the plain IoU loss
    one = distilled_targets(student.dense_head, out["dense"], gt, q, 1.0, 1.0, target="iou_branch")
    torch.testing.assert_close(student.dense_head.loss(out["dense"], gt, one)["loss_iou"], plain["loss_iou"])


def test_iou_branch_blend_against_the_formula():
    from clean_deploy.models.heads.iou_quality import blend_iou_target

    iou = torch.tensor([0.0, 0.25, 0.81, 1.0])
    q = torch.tensor([0.9, 0.36, 0.49, 0.04])
    torch.testing.assert_close(blend_iou_target(iou, q.sqrt(), 0.5), torch.tensor([0.0, 0.3, 0.63, 0.2]))


def test_label_assignment_fields_do_not_change_kd_without_label_assignment(pair):
    """What lets the ablation share kd_so units across recipes that differ only in la_* fields: with
    label assignment off, every la_* value gives the same loss; with it on, they matter."""
    cfg = get_config("centerpoint_fast@0.25x+iou")
    fields = DistillConfig.label_assignment_fields()
    assert set(fields) == {"la_alpha", "la_box_gamma", "la_soft_peaks", "la_class_aware", "la_class_norm",
                           "la_target"}
    changed = {"la_alpha": 0.9, "la_box_gamma": 0.0, "la_soft_peaks": False, "la_class_aware": False,
               "la_class_norm": True, "la_target": "iou_branch"}
    batch = toy_batch(cfg, 1)

    def loss(**kw):
        torch.manual_seed(0)
        student = build_detector(cfg).train()
        torch.manual_seed(1)
        kd = CaKDLoss(pair, student, DistillConfig(so_score_thresh=0.0, **kw))
        total, parts = kd(student, batch)
        return float(total.detach()), parts

    ref, _ = loss(label_assignment=False)
    got, _ = loss(label_assignment=False, **changed)
    assert got == ref
    on, _ = loss(label_assignment=True)
    on_changed, _ = loss(label_assignment=True, **changed)
    assert abs(on - on_changed) > 1e-4 * abs(on)


def test_iou_branch_refuses_a_student_without_an_iou_branch(pair):
    cfg = get_config("centerpoint_fast@0.25x")
    assert not cfg.dense_head.iou_branch
    student = build_detector(cfg).train()
    with pytest.raises(ValueError, match="IoU-quality branch"):
        CaKDLoss(pair, student, DistillConfig(la_target="iou_branch"))
    with pytest.raises(ValueError, match="la_target"):
        DistillConfig(la_target="heatmap")
    # with the branch: CaKD runs and its loss is finite
    cfg = get_config("centerpoint_fast@0.25x+iou")
    student = build_detector(cfg).train()
    total, parts = CaKDLoss(pair, student, DistillConfig(la_target="iou_branch"))(student, toy_batch(cfg, 1))
    assert math.isfinite(float(total.detach())) and "loss_iou" in parts
