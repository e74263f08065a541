"""RoI grid pooling against a loop-by-loop reference: every grid point takes the max over the
non-empty voxels in its query neighbourhood of relu(BN(W_f f + W_p (centre - point)))."""
import itertools

import numpy as np
import pytest
import torch

from clean_deploy.models.roi.grid_pool import VoxelQueryPool, roi_grid_points
from clean_deploy.models.sparse import spconv


def _reference(pool: VoxelQueryPool, coords, feats, shape, points, batch_idx):
    vs, pmin = pool.voxel_size.double(), pool.pc_min.double()
    lookup = {tuple(c): i for i, c in enumerate(coords.tolist())}
    w_f, w_p = pool.feat.weight.double(), pool.pos.weight.double()
    bn = pool.norm
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    k, g3, _ = points.shape
    c = pool.out_channels
    pooled = torch.zeros(k, g3, c, dtype=torch.float64)
    for r, g in itertools.product(range(k), range(g3)):
        p = points[r, g].double()
        cx, cy, cz = ((p - pmin) / vs).floor().long().tolist()
        for dz, dy, dx in pool.offsets.tolist():
            z, y, x = cz + dz, cy + dy, cx + dx
            if not (0 <= z < shape[0] and 0 <= y < shape[1] and 0 <= x < shape[2]):
                continue
            i = lookup.get((int(batch_idx[r]), z, y, x))
            if i is None:
                continue
            centre = (torch.tensor([x, y, z], dtype=torch.float64) + 0.5) * vs + pmin
            enc = torch.relu((w_f @ feats[i].double() + w_p @ (centre - p)) * scale + shift)
            pooled[r, g] = torch.maximum(pooled[r, g], enc)
    out = pool.out
    lin, bn2 = out[0], out[1]
    s2 = bn2.weight.double() / torch.sqrt(bn2.running_var.double() + bn2.eps)
    y = pooled.reshape(-1, c) @ lin.weight.double().T
    return torch.relu(y * s2 + bn2.bias.double() - bn2.running_mean.double() * s2).view(k, g3, c), pooled


@pytest.mark.parametrize("origin", [(0.0, -2.8, -1.0), (61.0, -39.5, -3.0)], ids=["near", "far"])
def test_voxel_query_pool_matches_loop_reference(origin):
    """``far``: the grid sits at KITTI-range coordinates (x ~ 62-67 m), where a point's absolute
    position carries ~5e-6 m of float rounding: the pooling must not lose precision there."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    shape = (4, 12, 14)  # z, y, x
    cells = rng.choice(np.prod(shape), size=120, replace=False)
    zyx = np.stack(np.unravel_index(cells, shape), 1)
    coords = torch.from_numpy(np.concatenate([rng.integers(0, 2, (120, 1)), zyx], 1)).int()
    coords = torch.unique(coords, dim=0)
    feats = torch.randn(len(coords), 5)
    sparse = spconv.SparseConvTensor(feats, coords, list(shape), 2)
    pool = VoxelQueryPool(5, 8, voxel_size=(0.4, 0.4, 0.5), pc_min=origin, query_range=(1, 1, 1)).eval()
    for bn in (pool.norm, pool.out[1]):  # non-trivial running statistics
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    rois = torch.tensor([[2.0, 0.0, 0.0, 2.0, 1.2, 1.0, 0.3], [3.5, -1.0, -0.3, 1.0, 1.5, 0.8, -1.1],
                         [5.2, 2.2, 0.2, 0.8, 0.8, 1.5, 2.0]])
    rois[:, :3] += torch.tensor(origin) - torch.tensor((0.0, -2.8, -1.0))
    points = roi_grid_points(rois, 3)
    batch_idx = torch.tensor([0, 1, 1])
    with torch.no_grad():
        got = pool(sparse, points, batch_idx)  # frozen and gradient-free: the fused C++ pooling
    with torch.no_grad():
        assert pool._fused_eval(feats)
    unfused = pool(sparse, points, batch_idx).detach()  # grad enabled: the torch path
    ref, ref_pooled = _reference(pool, coords, feats, shape, points, batch_idx)
    ref, ref_pooled = ref.detach(), ref_pooled.detach()
    assert (ref_pooled.abs().sum(-1) > 0).float().mean() > 0.5  # most grid points really see voxels
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unfused.double(), ref, rtol=1e-5, atol=1e-5)
    # the fused kernel's max itself (before the output layer), tightly: at x ~ 65 m an absolute
    # coordinate carries 4e-6 of float32 rounding, which a regrouping over absolute positions would
    # pass on (times the position weights); relative offsets keep the error at float rounding
    with torch.no_grad():
        proj = pool.feat(feats)
        vol = pool._volume(sparse, coords.long())
        fused = pool._pool_eval(proj, coords, points, batch_idx, vol).double().view_as(ref_pooled)
    assert (fused - ref_pooled).abs().max() < 2e-6 * max(1.0, float(ref_pooled.abs().max()))


def test_voxel_query_pool_gradients_flow_to_features():
    torch.manual_seed(1)
    coords = torch.tensor([[0, 1, 2, 2], [0, 1, 2, 3], [0, 2, 3, 3]], dtype=torch.int32)
    feats = torch.randn(3, 4, requires_grad=True)
    sparse = spconv.SparseConvTensor(feats, coords, [4, 6, 6], 1)
    pool = VoxelQueryPool(4, 6, voxel_size=(1.0, 1.0, 1.0), pc_min=(0.0, 0.0, 0.0), query_range=(1, 1, 1)).train()
    pts = roi_grid_points(torch.tensor([[2.5, 2.5, 1.5, 2.0, 2.0, 1.0, 0.0]]), 2)
    pool(sparse, pts, torch.tensor([0])).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def test_segment_max_matches_scatter_reduce_amax_with_gradients():
    """The C++ segment max (forward and its argmax backward) against torch's scatter_reduce amax."""
    from clean_deploy.models.roi.grid_pool import SegmentMax

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 6, (300,), generator=g)  # empty segments included
    lengths[:3] = 0
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = lengths.cumsum(0)
    rows = int(offsets[-1])
    src = torch.relu(torch.randn(rows, 7, generator=g))  # continuous values: no ties except at 0
    seg = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    a = src.clone().requires_grad_(True)
    b = src.clone().requires_grad_(True)
    out = SegmentMax.apply(a, offsets)
    ref = b.new_zeros(len(lengths), 7).scatter_reduce(0, seg[:, None].expand(-1, 7), b, "amax", include_self=True)
    assert torch.equal(out, ref)
    w = torch.randn(out.shape, generator=g)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    # torch splits the gradient of a zero max between the zero-start and the rows equal to 0; ReLU
    # inputs have zero gradient there, so compare where src > 0
    pos = src > 0
    assert torch.allclose(a.grad[pos], b.grad[pos])
    assert torch.equal(a.grad[~pos], torch.zeros_like(a.grad[~pos]))
    assert (a.grad != 0).sum() == (ref > 0).sum()
