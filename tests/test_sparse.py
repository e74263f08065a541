"""spconv wrapper: CPU backward patch and the single-thread guard, against dense conv3d.

These tests exercise spconv's own CPU path (the guard is only active with the ``spconv`` backend;
our kernels' operator is tested in test_sparse_ops.py)."""
import pytest
import torch
import torch.nn.functional as F

from clean_deploy.models.sparse import SparseBlock, patch_applied, spconv, use_sparse_backend


@pytest.fixture(autouse=True)
def _spconv_backend():
    with use_sparse_backend("spconv"):
        yield


def _random_sparse(seed, c=16, shape=(12, 24, 24), density=0.06):
    g = torch.Generator().manual_seed(seed)
    d, h, w = shape
    mask = torch.rand(d, h, w, generator=g) < density
    idx = mask.nonzero().int()
    feats = torch.randn(len(idx), c, generator=g, dtype=torch.float64)
    coords = torch.cat([torch.zeros(len(idx), 1, dtype=torch.int32), idx], 1)
    dense = torch.zeros(1, c, d, h, w, dtype=torch.float64)
    dense[0, :, idx[:, 0].long(), idx[:, 1].long(), idx[:, 2].long()] = feats.t()
    return feats, coords, list(shape), dense


def _dense_weight(conv):
    # spconv 2.x keeps weights as [out, kD, kH, kW, in]
    return conv.weight.permute(0, 4, 1, 2, 3)


@pytest.mark.parametrize("seed", range(4))
def test_sparse_conv_matches_dense_with_two_threads(seed):
    torch.manual_seed(seed)
    feats, coords, shape, dense = _random_sparse(seed)
    conv = spconv.SparseConv3d(16, 32, 3, stride=1, padding=1, bias=False).double()
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with SparseBlock("cpu") as blk:
            f = blk.input(feats)
            out = conv(spconv.SparseConvTensor(f, coords, shape, 1))
            out = blk.output(out)
        assert torch.get_num_threads() == 2, "thread count must be restored after the block"
        ref = F.conv3d(dense, _dense_weight(conv), padding=1)
        assert (out.dense() - ref).abs().max().item() < 1e-9
    finally:
        torch.set_num_threads(old)


def test_subm_and_strided_conv_match_dense():
    feats, coords, shape, dense = _random_sparse(7)
    subm = spconv.SubMConv3d(16, 8, 3, padding=1, bias=False).double()
    with SparseBlock("cpu"):
        out = subm(spconv.SparseConvTensor(feats, coords, shape, 1))
    ref = F.conv3d(dense, _dense_weight(subm), padding=1)
    # submanifold: outputs only at input sites
    site = (dense.abs().sum(1, keepdim=True) > 0).double()
    assert (out.dense() - ref * site).abs().max().item() < 1e-9
    strided = spconv.SparseConv3d(16, 8, 3, stride=2, padding=1, bias=False).double()
    with SparseBlock("cpu"):
        out = strided(spconv.SparseConvTensor(feats, coords, shape, 1))
    ref = F.conv3d(dense, _dense_weight(strided), stride=2, padding=1)
    assert (out.dense() - ref).abs().max().item() < 1e-9


def test_backward_matches_dense_and_restores_threads():
    assert patch_applied() or torch.cuda.is_available()
    feats, coords, shape, dense = _random_sparse(3)
    conv1 = spconv.SubMConv3d(16, 16, 3, padding=1, bias=False).double()
    conv2 = spconv.SparseConv3d(16, 8, 3, stride=2, padding=1, bias=False).double()
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with SparseBlock("cpu") as blk:
            x = spconv.SparseConvTensor(blk.input(feats), coords, shape, 1)
            y = blk.output(conv2(conv1(x)))
        loss = (y.dense() ** 2).sum()
        loss.backward()
        assert torch.get_num_threads() == 2, "backward must restore the thread count"
        # dense reference of the same composition: subm conv keeps only active sites
        w1 = _dense_weight(conv1).detach().clone().requires_grad_(True)
        w2 = _dense_weight(conv2).detach().clone().requires_grad_(True)
        site = (dense.abs().sum(1, keepdim=True) > 0).double()
        h = F.conv3d(dense, w1, padding=1) * site
        ref = F.conv3d(h, w2, stride=2, padding=1)
        out_site = (y.dense().abs().sum(1, keepdim=True) > 0).double()
        ((ref * out_site) ** 2).sum().backward()
        g1 = conv1.weight.grad.permute(0, 4, 1, 2, 3)
        g2 = conv2.weight.grad.permute(0, 4, 1, 2, 3)
        assert torch.allclose(g1, w1.grad, atol=1e-8)
        assert torch.allclose(g2, w2.grad, atol=1e-8)
    finally:
        torch.set_num_threads(old)


def test_partial_backward_leaves_no_stale_thread_gate():
    """torch.autograd.grad w.r.t. an inner activation (Taylor importance) never runs the block's input
    gate. finish_backward() restores the threads, and even without it the next full backward still
    runs spconv single-threaded (CI once saw wrong gradients from a stale saved thread count)."""
    from clean_deploy.models.sparse import finish_backward

    feats, coords, shape, _ = _random_sparse(5)
    conv1 = spconv.SubMConv3d(16, 16, 3, padding=1, bias=False).double()
    conv2 = spconv.SparseConv3d(16, 8, 3, stride=2, padding=1, bias=False).double()
    old = torch.get_num_threads()
    seen: list[int] = []

    def run(partial: bool) -> None:
        with SparseBlock("cpu") as blk:
            x = spconv.SparseConvTensor(blk.input(feats), coords, shape, 1)
            h = conv1(x)
            h.features.register_hook(lambda g: seen.append(torch.get_num_threads()))
            y = blk.output(conv2(h))
        loss = (y.features ** 2).sum()
        if partial:
            torch.autograd.grad(loss, [h.features])
        else:
            loss.backward()

    torch.set_num_threads(2)
    try:
        run(partial=True)
        assert seen == [1] and torch.get_num_threads() == 1  # stuck without finish_backward
        finish_backward()
        assert torch.get_num_threads() == 2
        finish_backward()  # nothing pending: no-op
        assert torch.get_num_threads() == 2
        run(partial=True)  # a stale gate again, then threads changed by the user
        torch.set_num_threads(2)
        run(partial=False)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        finish_backward()
        torch.set_num_threads(old)
