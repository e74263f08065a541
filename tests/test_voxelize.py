"""spconv PointToVoxel wrapper against a numpy floor((p - min) / size) reference."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from clean_deploy.models.config import DetectorConfig
from clean_deploy.data.voxelize import Voxelizer

RANGE = (0.0, -8.0, -3.0, 12.8, 8.0, 1.0)
SIZE = (0.2, 0.2, 0.4)


def _points(seed, n=30000):
    rng = np.random.default_rng(seed)
    lo, hi = np.array(RANGE[:3]), np.array(RANGE[3:])
    xyz = rng.uniform(lo - 1.0, hi + 1.0, (n, 3))  # some outside the range
    # clusters so that many voxels overflow max_points_per_voxel
    centres = rng.uniform(lo, hi, (50, 3))
    xyz[: n // 3] = centres[rng.integers(0, 50, n // 3)] + rng.normal(0, 0.1, (n // 3, 3))
    return np.concatenate([xyz, rng.uniform(0, 1, (n, 1))], 1).astype(np.float32)


def _reference(vox: Voxelizer, pts: np.ndarray):
    """Per in-grid point: its voxel (z y x) and the order of voxels by first appearance."""
    cz, inside = vox.point_voxel_coords(pts)
    p, cz = pts[inside], cz[inside]
    uniq, first, inv, counts = np.unique(cz, axis=0, return_index=True, return_inverse=True,
                                         return_counts=True)
    order = np.argsort(first, kind="stable")  # voxels in order of their first point
    return p, cz, uniq[order], counts[order], inv.reshape(-1), order


@pytest.mark.parametrize("seed", range(3))
def test_voxelizer_matches_reference(seed):
    pts = _points(seed)
    vox = Voxelizer(SIZE, RANGE, max_points_per_voxel=5, max_voxels=100000)
    assert vox.grid_size.tolist() == [64, 80, 10]
    voxels, coords, num = vox(pts)
    assert voxels.dtype == np.float32 and coords.dtype == np.int32 and num.dtype == np.int32
    p, cz, uniq, counts, inv, order = _reference(vox, pts)
    # same voxels, in order of first appearance, with min(count, max_points) points
    assert np.array_equal(coords, uniq)
    assert np.array_equal(num, np.minimum(counts, 5))
    assert (counts > 5).sum() > 100  # the test exercises overflow
    # each voxel holds the first max_points points of that voxel, in input order
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    vid = rank[inv]  # voxel row of every in-grid point
    slot = np.zeros(len(p), np.int64)
    srt = np.argsort(vid, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(vid, minlength=len(uniq)))[:-1]]
    slot[srt] = np.arange(len(p)) - np.repeat(starts, np.bincount(vid, minlength=len(uniq)))
    kept = slot < 5
    assert np.array_equal(voxels[vid[kept], slot[kept]], p[kept])
    # padding rows are zero; every stored point floors to its voxel's coordinate
    pad = np.arange(5)[None, :] >= num[:, None]
    assert (voxels[pad] == 0).all()
    stored = voxels[~pad]
    sc, ins = vox.point_voxel_coords(stored)
    assert ins.all() and np.array_equal(sc, np.repeat(coords, num, axis=0))
    # mean-VFE features agree with a numpy mean over the kept points
    mean = voxels[:, :, :3].sum(1) / num[:, None]
    ref = np.zeros((len(uniq), 3))
    np.add.at(ref, vid[kept], p[kept, :3])
    assert np.abs(mean - ref / np.minimum(counts, 5)[:, None]).max() < 1e-4


def test_max_voxels_keeps_first_voxels_and_is_deterministic():
    pts = _points(7)
    vox = Voxelizer(SIZE, RANGE, max_points_per_voxel=3, max_voxels=500)
    v1, c1, n1 = vox(pts)
    v2, c2, n2 = vox(pts)
    assert np.array_equal(v1, v2) and np.array_equal(c1, c2) and np.array_equal(n1, n2)
    _, _, uniq, counts, _, _ = _reference(vox, pts)
    assert len(c1) == 500 and np.array_equal(c1, uniq[:500])
    assert np.array_equal(n1, np.minimum(counts[:500], 3))
    # a different call in between does not leak state (spconv's CPU hash is reused)
    vox(_points(8))
    v3, c3, _ = vox(pts)
    assert np.array_equal(v3, v1) and np.array_equal(c3, c1)


def test_empty_torch_pickle_and_config():
    det = DetectorConfig(voxel_size=SIZE, point_cloud_range=RANGE, max_points_per_voxel=4, max_voxels_train=10,
                         max_voxels_test=20)
    vox = Voxelizer.from_config(det, training=False)
    assert vox.max_voxels == 20 and vox.max_points_per_voxel == 4
    v, c, n = vox(np.zeros((0, 4), np.float32))
    assert v.shape == (0, 4, 4) and c.shape == (0, 3) and n.shape == (0,)
    pts = _points(1, 200)
    tv, tc, tn = vox(torch.from_numpy(pts))
    assert isinstance(tv, torch.Tensor) and tc.dtype == torch.int32 and len(tc) == 20
    nv, nc, nn = vox(pts)
    assert np.array_equal(tv.numpy(), nv) and np.array_equal(tc.numpy(), nc)
    clone = pickle.loads(pickle.dumps(vox))
    assert clone._gen is None and np.array_equal(clone(pts)[1], nc)
    with pytest.raises(ValueError, match=r"expects \(N, 4\) points"):
        vox(np.zeros((3, 3), np.float32))
