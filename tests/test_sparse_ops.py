"""The clean_deploy sparse conv operator (C++ kernels, forward and backward) used for CPU training:
against a dense conv3d in float64, spconv's single-threaded gradients, gradcheck, and bitwise
determinism across thread counts; the backbone and a short training run against spconv."""
import pytest
import torch
import torch.nn.functional as F

from clean_deploy.models.sparse import (SparseConv3d, SubMConv3d, describe_backend, sparse_backend, spconv,
                                        use_sparse_backend)
from clean_deploy.models.sparse_ops import build_rulebook, conv_with_rulebook
from clean_deploy.native import kernels


def test_library_is_built_and_default_on_cpu():
    # `make setup` builds it: a missing library must fail here, not fall back silently
    assert kernels.library_path().is_file()
    assert sparse_backend("cpu") == "clean_deploy"
    assert describe_backend("cpu").startswith("clean_deploy (C++ kernels, ")
    with use_sparse_backend("spconv"):
        assert sparse_backend("cpu") == "spconv"
    with pytest.raises(ValueError, match="unknown sparse conv backend 'nope'"):
        with use_sparse_backend("nope"):
            pass


def _sites(seed, shape, n, batch=1):
    g = torch.Generator().manual_seed(seed)
    d, h, w = shape
    rows = []
    for b in range(batch):
        cells = torch.randperm(d * h * w, generator=g)[:n]
        rows.append(torch.stack([torch.full_like(cells, b), cells // (h * w), (cells // w) % h, cells % w], 1))
    return torch.cat(rows).int()


def _dense_conv(feats, idx, weight, bias, shape, batch, stride, padding, dilation, subm, out_idx):
    """Dense conv3d of the scattered features, read at the output sites (subm: same sites)."""
    cin = feats.shape[1]
    dense = torch.zeros(batch, cin, *shape, dtype=feats.dtype)
    i = idx.long()
    dense[i[:, 0], :, i[:, 1], i[:, 2], i[:, 3]] = feats
    w = weight.permute(0, 4, 1, 2, 3)
    if subm:
        k = w.shape[2:]
        padding = tuple(dilation[a] * (k[a] - 1) // 2 for a in range(3))
        stride = (1, 1, 1)
    out = F.conv3d(dense, w, bias, stride, padding, dilation)
    o = out_idx.long()
    return out[o[:, 0], :, o[:, 1], o[:, 2], o[:, 3]]


# name: (shape, sites per frame, batch, cin, cout, kernel, stride, padding, dilation, subm)
CASES = {
    "subm3": ((6, 9, 8), 70, 1, 5, 4, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), True),
    "strided_s2_p1": ((7, 9, 8), 60, 2, 4, 6, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), False),
    "strided_s2_p011": ((7, 10, 9), 60, 1, 3, 5, (3, 3, 3), (2, 2, 2), (0, 1, 1), (1, 1, 1), False),
    "z_collapse_311": ((5, 6, 6), 40, 1, 4, 3, (3, 1, 1), (2, 1, 1), (0, 0, 0), (1, 1, 1), False),
    "subm_dilated": ((6, 8, 8), 50, 1, 3, 3, (3, 3, 3), (1, 1, 1), (2, 2, 2), (2, 2, 2), True),
    "single_voxel": ((5, 5, 5), 1, 1, 3, 2, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float64_forward_and_gradients_match_dense_conv3d(name):
    shape, n, batch, cin, cout, k, s, p, d, subm = CASES[name]
    idx = _sites(len(name), shape, n, batch)
    rb = build_rulebook(idx, shape, k, s, p, d, subm)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(len(idx), cin, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(cout, *k, cin, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(cout, generator=g, dtype=torch.float64, requires_grad=True)
    out = conv_with_rulebook(feats, weight, bias, rb)
    gout = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(out, (feats, weight, bias), gout)

    f2, w2, b2 = (t.detach().clone().requires_grad_(True) for t in (feats, weight, bias))
    ref = _dense_conv(f2, idx, w2, b2, shape, batch, s, p, d, subm, rb.out_indices)
    ref_grads = torch.autograd.grad(ref, (f2, w2, b2), gout)
    assert len(rb.out_indices) > 0
    assert (out - ref).abs().max().item() < 1e-12
    for name_, a, b in zip(("features", "weight", "bias"), grads, ref_grads):
        assert (a - b).abs().max().item() < 1e-11, name_


def test_gradcheck_tiny_grid():
    idx = _sites(1, (4, 4, 4), 9)
    for subm, s in ((True, 1), (False, 2)):
        rb = build_rulebook(idx, (4, 4, 4), 3, s, 1, 1, subm)
        g = torch.Generator().manual_seed(0)
        f = torch.randn(len(idx), 2, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3, 3, 3, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
        b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda f, w, b: conv_with_rulebook(f, w, b, rb), (f, w, b))


def test_empty_output_and_empty_input():
    # an input whose only site falls outside every strided output window... a strided conv over an
    # empty set of sites: no outputs, zero gradients, no crash
    idx = torch.zeros((0, 4), dtype=torch.int32)
    rb = build_rulebook(idx, (5, 5, 5), 3, 2, 1, 1, False)
    f = torch.zeros((0, 3), requires_grad=True)
    w = torch.randn(2, 3, 3, 3, 3, requires_grad=True)
    out = conv_with_rulebook(f, w, None, rb)
    assert out.shape == (0, 2)
    out.sum().backward()
    assert w.grad is not None and torch.equal(w.grad, torch.zeros_like(w))
    # a kernel (1,1,1) with stride 2: an input at an odd coordinate meets no output
    idx = torch.tensor([[0, 1, 1, 1]], dtype=torch.int32)
    rb = build_rulebook(idx, (3, 3, 3), 1, 2, 0, 1, False)
    assert rb.neighbors.shape == (0, 1)
    f = torch.ones((1, 3), requires_grad=True)
    w = torch.randn(2, 1, 1, 1, 3, requires_grad=True)
    out = conv_with_rulebook(f, w, None, rb)
    (out.sum() + 0 * f.sum()).backward()
    assert torch.equal(f.grad, torch.zeros_like(f)) and torch.equal(w.grad, torch.zeros_like(w))
    # no input channels: the output is the bias, whose gradient still sums every output row
    idx = _sites(3, (4, 4, 4), 6)
    rb = build_rulebook(idx, (4, 4, 4), 3, 1, 1, 1, True)
    f = torch.zeros((6, 0), requires_grad=True)
    w = torch.zeros(2, 3, 3, 3, 0, requires_grad=True)
    b = torch.tensor([0.5, -1.0], requires_grad=True)
    out = conv_with_rulebook(f, w, b, rb)
    g = torch.arange(12, dtype=torch.float32).view(6, 2)
    out.backward(g)
    assert torch.equal(out.detach(), b.detach().expand(6, 2)) and torch.equal(b.grad, g.sum(0))


def _float32_case(seed=0, n=3000, cin=16, cout=32):
    idx = _sites(seed, (20, 60, 60), n, batch=2)
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(idx), cin, generator=g)
    weight = torch.randn(cout, 3, 3, 3, cin, generator=g) / (27 * cin) ** 0.5
    return idx, feats, weight


@pytest.mark.parametrize("subm,stride", [(True, 1), (False, 2)])
def test_float32_gradients_match_spconv_single_thread(subm, stride):
    idx, feats, weight = _float32_case(1)
    cls_ours, cls_ref = (SubMConv3d, spconv.SubMConv3d) if subm else (SparseConv3d, spconv.SparseConv3d)
    res = {}
    for backend, cls in (("clean_deploy", cls_ours), ("spconv", cls_ref)):
        conv = cls(16, 32, 3, stride=stride, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(weight)
        f = feats.clone().requires_grad_(True)
        old = torch.get_num_threads()
        torch.set_num_threads(1)  # spconv's CPU path is only correct single-threaded
        try:
            with use_sparse_backend(backend):
                y = conv(spconv.SparseConvTensor(f, idx, [20, 60, 60], 2))
                order = torch.argsort(((y.indices[:, 0] * 20 + y.indices[:, 1]) * 60 + y.indices[:, 2]) * 60
                                      + y.indices[:, 3])
                gout = torch.sin(torch.arange(y.features.numel(), dtype=torch.float32)).view_as(y.features)
                (y.features[order] * gout).sum().backward()
        finally:
            torch.set_num_threads(old)
        res[backend] = (y.features[order].detach(), f.grad, conv.weight.grad)
    for a, b in zip(res["clean_deploy"], res["spconv"]):
        assert (a - b).abs().max().item() <= 2e-5 * max(1.0, b.abs().max().item())


def test_bitwise_identical_with_one_and_two_threads():
    idx, feats, weight = _float32_case(2, n=4000, cin=16, cout=20)
    bias = torch.randn(20)
    results = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2, 1, 2):
            torch.set_num_threads(threads)
            outs = []
            for subm, s in ((True, 1), (False, 2)):
                rb = build_rulebook(idx, (20, 60, 60), 3, s, 1, 1, subm)
                f, w, b = (t.clone().requires_grad_(True) for t in (feats, weight, bias))
                y = conv_with_rulebook(f, w, b, rb)
                (y * torch.cos(y)).sum().backward()
                outs += [y.detach(), f.grad, w.grad, b.grad, rb.neighbors, rb.out_indices]
            results.append(outs)
    finally:
        torch.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_operator_refuses_bad_inputs():
    idx = _sites(0, (4, 4, 4), 5)
    rb = build_rulebook(idx, (4, 4, 4), 3, 1, 1, 1, True)
    f = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"do not fit weight"):
        conv_with_rulebook(f, torch.randn(2, 3, 3, 3, 4), None, rb)
    with pytest.raises(TypeError, match="float32 or float64"):
        conv_with_rulebook(f.half(), torch.randn(2, 3, 3, 3, 3).half(), None, rb)
    with pytest.raises(ValueError, match=r"neighbors must be \(M,1\) int32"):
        conv_with_rulebook(f, torch.randn(2, 1, 1, 1, 3), None, rb)
    bad = idx.clone()
    bad[0, 1] = 7  # outside the grid
    with pytest.raises(kernels.KernelError, match="outside"):
        build_rulebook(bad, (4, 4, 4), 3, 1, 1, 1, True)


def test_backbone_float64_matches_spconv():
    """The whole sparse backbone (BN in train mode) on both backends in float64: outputs, the input
    gradient and every parameter gradient agree to ~1e-12."""
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.data.dataset import collate_batch
    from toy import toy_samples

    cfg = get_config("second_fast@0.25x")
    batch = collate_batch(toy_samples(cfg, 2))
    torch.manual_seed(0)
    det = build_detector(cfg)
    vf = det.vfe(batch["voxels"], batch["voxel_num_points"], batch["voxel_coords"]).double().detach()
    bb = det.backbone3d.double().train()
    res = {}
    for backend in ("spconv", "clean_deploy"):
        bb.zero_grad()
        x = vf.clone().requires_grad_(True)
        with use_sparse_backend(backend):
            enc = bb(x, batch["voxel_coords"], 2)["encoded"].dense()
        w = torch.sin(torch.arange(enc.numel(), dtype=torch.float64)).view_as(enc)
        (enc * w).sum().backward()
        res[backend] = [enc.detach(), x.grad] + [p.grad.clone() for p in bb.parameters()]
    for a, b in zip(res["spconv"], res["clean_deploy"]):
        assert (a - b).abs().max().item() <= 1e-10 * max(1.0, a.abs().max().item())


def test_training_loss_curve_matches_spconv(synth_data, tmp_path):
    """30 optimiser steps of a student with each backend.

    In float64 (network and input voxels; the anchors and targets stay float32) the two loss curves
    agree to 1e-9 relative at every step (measured: <= 3.2e-13 on an AMD EPYC, 2026-12-02): the
    training path itself is the same, forward and backward, through BatchNorm and AdamW.

    In float32 the curves cannot agree that closely beyond the first steps with *any* change of
    summation order: training here is chaotic (AdamW + BatchNorm on 6 frames), and spconv itself,
    started from weights perturbed by 1e-7 (relative), drifts to ~1e-2 within 10 steps. How fast
    depends on the CPU (step 4 differed by 2.1e-3 on an AMD EPYC, under 1e-4 on an Intel Xeon), so
    the float32 curve is compared with that envelope: ours stays as close to spconv's as spconv's
    own perturbed one."""
    from clean_deploy.config import AugmentConfig, GTSamplingConfig, TrainConfig
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.models.checkpoint import load_checkpoint
    from clean_deploy.train.loop import Trainer

    aug = AugmentConfig(gt_sampling=GTSamplingConfig(enabled=False), random_flip_x=False, global_rotation=None,
                        global_scaling=None)
    cfg = get_config("second_fast@0.25x")
    from clean_deploy.train.loop import default_loss

    def loss_f64(model, batch):
        return default_loss(model, {k: (v.double() if k in ("voxels", "points") else v) for k, v in batch.items()})

    curves = {}
    for name, backend, perturb, dtype in (("spconv", "spconv", 0.0, torch.float32),
                                          ("spconv_perturbed", "spconv", 1e-7, torch.float32),
                                          ("ours", "clean_deploy", 0.0, torch.float32),
                                          ("spconv_f64", "spconv", 0.0, torch.float64),
                                          ("ours_f64", "clean_deploy", 0.0, torch.float64)):
        torch.manual_seed(0)
        model = build_detector(cfg).to(dtype)
        if perturb:
            g = torch.Generator().manual_seed(5)
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1 + perturb * torch.randn(p.shape, generator=g))
        tcfg = TrainConfig(epochs=10, batch_size=2, lr=0.003, num_workers=0, seed=0, device="cpu")
        with use_sparse_backend(backend):
            res = Trainer(cfg, tcfg, synth_data, tmp_path / name, augment=aug, model=model, progress=False,
                          loss_fn=loss_f64 if dtype == torch.float64 else None).fit()
        curves[name] = torch.tensor([h["loss"] for h in res.history], dtype=torch.float64)
        assert load_checkpoint(res.final_checkpoint)["meta"]["sparse_backend"] == backend  # recorded with the run
    ref64 = curves["spconv_f64"]
    assert len(ref64) == 30 and not torch.equal(ref64, curves["spconv"].double())  # really float64
    ours64 = ((curves["ours_f64"] - ref64).abs() / ref64.abs()).numpy()
    assert ours64.max() < 1e-9, ours64
    ref = curves["spconv"]
    assert len(ref) == 30
    ours = ((curves["ours"] - ref).abs() / ref.abs()).numpy()
    envelope = ((curves["spconv_perturbed"] - ref).abs() / ref.abs()).numpy()
    assert ours[0] < 1e-4, ours[:4]  # the first step, before any optimiser update, is float32 noise
    # measured on the 2-core machine: mean over 30 steps 0.030 (ours) vs 0.035 (perturbed spconv)
    assert ours.mean() < 4 * envelope.mean() + 1e-4, (ours.mean(), envelope.mean())
