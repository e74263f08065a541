"""Augmentations keep points and boxes consistent; GT sampling pastes without collisions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clean_deploy.config import GTSamplingConfig
from clean_deploy.data.augment import (GTDatabase, GTSampler, flip_x, global_rotation,
                                       global_scaling, random_flip_x, rotate, scale)
from clean_deploy.data.augment.gt_sampling import gather_ranges
from clean_deploy.geometry.boxes import limit_period, points_in_boxes_mask
from clean_deploy.geometry.iou import iou_bev


def _boxes(rng, n, spread=30.0):
    return np.stack([rng.uniform(0, spread, n), rng.uniform(-spread / 2, spread / 2, n),
                     rng.uniform(-1.5, 0, n), rng.uniform(0.6, 5, n), rng.uniform(0.5, 2.2, n),
                     rng.uniform(1.2, 2.2, n), rng.uniform(-math.pi, math.pi, n)], 1).astype(np.float32)


def _points_in(rng, box, n, frac=0.9):
    local = rng.uniform(-frac / 2, frac / 2, (n, 3)) * box[3:6]
    c, s = math.cos(box[6]), math.sin(box[6])
    xyz = np.stack([local[:, 0] * c - local[:, 1] * s, local[:, 0] * s + local[:, 1] * c,
                    local[:, 2]], 1) + box[:3]
    return np.concatenate([xyz, rng.uniform(0, 1, (n, 1))], 1).astype(np.float32)


def _scene(seed, n_boxes=8, n_bg=20000):
    rng = np.random.default_rng(seed)
    boxes = _boxes(rng, n_boxes)
    bg = np.stack([rng.uniform(-5, 35, n_bg), rng.uniform(-20, 20, n_bg), rng.uniform(-2, 1, n_bg),
                   rng.uniform(0, 1, n_bg)], 1).astype(np.float32)
    pts = np.concatenate([bg] + [_points_in(rng, b, 50) for b in boxes], 0)
    return pts, boxes, rng


# ----------------------------------------------------------------- global transforms
@pytest.mark.parametrize("seed", range(3))
def test_transforms_keep_point_box_membership(seed):
    pts, boxes, rng = _scene(seed)
    before = points_in_boxes_mask(pts, boxes)
    assert before.sum() >= 400  # object points plus background points falling inside
    for name, (p2, b2) in {
        "flip": flip_x(pts, boxes),
        "rotate": rotate(pts, boxes, float(rng.uniform(-math.pi, math.pi))),
        "scale": scale(pts, boxes, float(rng.uniform(0.9, 1.1))),
    }.items():
        assert p2.dtype == np.float32 and b2.dtype == np.float32 and p2.shape == pts.shape
        after = points_in_boxes_mask(p2, b2)
        assert np.array_equal(before, after), name
        assert (np.abs(b2[:, 6]) <= math.pi + 1e-6).all(), name
    # inputs untouched
    assert np.array_equal(points_in_boxes_mask(pts, boxes), before)


def test_rotation_preserves_distances_and_is_exact():
    pts, boxes, _ = _scene(5)
    angle = 0.7
    p2, b2 = rotate(pts, boxes, angle)
    d_before = np.linalg.norm(pts[:, None, :3] - boxes[None, :, :3], axis=-1)
    d_after = np.linalg.norm(p2[:, None, :3] - b2[None, :, :3], axis=-1)
    assert np.abs(d_after - d_before).max() < 1e-4
    assert np.abs(limit_period(b2[:, 6] - boxes[:, 6] - angle)).max() < 1e-6
    assert np.array_equal(p2[:, 2:], pts[:, 2:]) and np.array_equal(b2[:, 2:6], boxes[:, 2:6])
    # rotating by pi/2 maps (x, y) to (-y, x)
    p3, _ = rotate(np.array([[1.0, 2.0, 3.0, 0.5]], np.float32), boxes[:1], math.pi / 2)
    assert np.allclose(p3, [[-2.0, 1.0, 3.0, 0.5]], atol=1e-6)


def test_flip_and_scale_values():
    pts = np.array([[1.0, 2.0, 3.0, 0.5]], np.float32)
    box = np.array([[4.0, 5.0, -1.0, 4.0, 2.0, 1.5, 0.5, 2.0]], np.float32)  # 8th column: class
    p, b = flip_x(pts, box)
    assert p.tolist() == [[1.0, -2.0, 3.0, 0.5]]
    assert np.allclose(b, [[4.0, -5.0, -1.0, 4.0, 2.0, 1.5, -0.5, 2.0]])
    p2, b2 = flip_x(p, b)
    assert np.allclose(p2, pts) and np.allclose(b2, box)
    p, b = scale(pts, box, 2.0)
    assert p.tolist() == [[2.0, 4.0, 6.0, 0.5]]  # intensity unchanged
    assert np.allclose(b, [[8.0, 10.0, -2.0, 8.0, 4.0, 3.0, 0.5, 2.0]])  # yaw, class unchanged


def test_random_versions_are_seeded():
    pts, boxes, _ = _scene(2, n_bg=100)
    flips = [random_flip_x(pts, boxes, np.random.default_rng(s))[2] for s in range(200)]
    assert 70 < sum(flips) < 130  # probability 0.5
    a = [global_rotation(pts, boxes, np.random.default_rng(s), (-0.5, 0.25))[2] for s in range(200)]
    assert -0.5 <= min(a) and max(a) <= 0.25 and abs(np.mean(a) + 0.125) < 0.05
    f = [global_scaling(pts, boxes, np.random.default_rng(s), (0.9, 1.2))[2] for s in range(200)]
    assert 0.9 <= min(f) and max(f) <= 1.2
    r1 = global_rotation(pts, boxes, np.random.default_rng(7))
    r2 = global_rotation(pts, boxes, np.random.default_rng(7))
    assert r1[2] == r2[2] and np.array_equal(r1[0], r2[0]) and np.array_equal(r1[1], r2[1])


# --------------------------------------------------------------------- GT sampling
def _database(seed, n=60):
    """Objects spread over a 60x60 m area, each with its points relative to the box centre."""
    rng = np.random.default_rng(seed)
    names = np.array(["Car", "Pedestrian", "Cyclist"])[rng.integers(0, 3, n)]
    boxes = _boxes(rng, n, spread=60.0)
    boxes[:, 0] -= 15
    counts = rng.integers(3, 60, n)
    pts = [(_points_in(rng, b, k) - np.r_[b[:3], 0]).astype(np.float32) for b, k in zip(boxes, counts)]
    return GTDatabase(names=names, boxes=boxes, difficulty=rng.integers(-1, 3, n),
                      num_points=counts.astype(np.int64),
                      starts=np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64),
                      frame_ids=np.array([f"{i:06d}" for i in range(n)]),
                      gt_index=np.zeros(n, np.int64), points=np.concatenate(pts, 0))


def test_gather_ranges():
    assert gather_ranges(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist() == [5, 6, 9, 10, 11]
    assert gather_ranges(np.zeros(0, int), np.zeros(0, int)).shape == (0,)


@pytest.mark.parametrize("seed", range(4))
def test_gt_sampling_pastes_without_collisions(seed):
    db = _database(seed)
    pts, boxes, rng = _scene(seed + 10, n_boxes=6, n_bg=30000)
    names = np.array(["Car", "Car", "Pedestrian", "Van", "Car", "Cyclist"])
    cfg = GTSamplingConfig(sample_counts={"Car": 12, "Pedestrian": 6, "Cyclist": 6}, min_points=5,
                           drop_difficulties=(-1,))
    sampler = GTSampler(db, cfg)
    # pools respect min_points and the difficulty filter
    for cls, pool in sampler.pools.items():
        assert (db.names[pool] == cls).all() and (db.num_points[pool] >= 5).all()
        assert (db.difficulty[pool] != -1).all()
    new_pts, new_boxes, new_names, idx = sampler(pts, boxes, names, rng)
    k = len(idx)
    assert k > 0 and len(new_boxes) == len(boxes) + k and len(new_names) == len(names) + k
    pasted = new_boxes[len(boxes):]
    assert np.array_equal(pasted, db.boxes[idx]) and np.array_equal(new_boxes[:len(boxes)], boxes)
    assert new_names[len(names):].tolist() == db.names[idx].tolist()
    # no overlap with existing boxes nor between pasted boxes
    assert (iou_bev(pasted, boxes) == 0).all()
    pair = iou_bev(pasted, pasted)
    assert (pair[~np.eye(k, dtype=bool)] == 0).all()
    # per-class targets never exceeded; sampled objects unique
    for cls, target in cfg.sample_counts.items():
        have = (names == cls).sum()
        assert (new_names == cls).sum() <= max(target, have)
    assert len(np.unique(idx)) == k
    # points inside each pasted box: exactly the database object's points
    inside = points_in_boxes_mask(new_pts, pasted)
    assert inside.sum(0).tolist() == db.num_points[idx].tolist()
    assert np.array_equal(new_pts[:db.num_points[idx].sum()], db.object_points(idx))
    # the scene's points inside pasted boxes were removed, all the others kept
    scene_in = points_in_boxes_mask(pts, pasted).any(1)
    assert scene_in.sum() > 0 or k < 3
    assert len(new_pts) == db.num_points[idx].sum() + (~scene_in).sum()
    assert np.array_equal(new_pts[db.num_points[idx].sum():], pts[~scene_in])


def test_gt_sampling_targets_and_rejections():
    db = _database(1)
    existing = db.boxes[:3].copy()  # exact copies of database objects: those must be rejected
    names = np.array(["Car", "Car", "Car"])
    sampler = GTSampler(db, GTSamplingConfig(sample_counts={"Car": 100, "Pedestrian": 0,
                                                            "Cyclist": 0},
                                             min_points=0, drop_difficulties=()))
    idx = sampler.select(existing, names, np.random.default_rng(0))
    assert not np.isin(idx, [0, 1, 2]).any()
    assert (db.names[idx] == "Car").all() and len(idx) > 0
    # greedy acceptance: every rejected car candidate overlaps an accepted or existing box
    rejected = np.setdiff1d(sampler.pools["Car"], np.r_[idx, 0, 1, 2])
    occupied = np.concatenate([existing, db.boxes[idx]])
    assert (iou_bev(db.boxes[rejected], occupied).max(1) > 0).all()
    # a frame that already holds the target count samples nothing
    full = GTSampler(db, GTSamplingConfig(sample_counts={"Car": 3}))
    assert len(full.select(existing, names, np.random.default_rng(0))) == 0
    # empty frames, empty database
    p, b, n, i = full(np.zeros((0, 4), np.float32), np.zeros((0, 7), np.float32),
                      np.zeros(0, str), np.random.default_rng(0))
    assert len(i) == 3 and len(p) == db.num_points[i].sum() and b.shape == (3, 7)
    e = GTSampler(GTDatabase.empty(), GTSamplingConfig())
    p, b, n, i = e(np.ones((4, 4), np.float32), np.zeros((0, 7), np.float32), np.zeros(0, str),
                   np.random.default_rng(0))
    assert p.shape == (4, 4) and b.shape == (0, 7) and len(i) == 0


def test_gt_sampling_remove_extra_width():
    db = _database(3, n=5)
    box = db.boxes[:1]
    d = db.subset(np.array([0]))
    rng = np.random.default_rng(0)
    # a scene point just outside the box along its length: kept without margin, removed with 0.4 m
    c, s = math.cos(box[0, 6]), math.sin(box[0, 6])
    off = box[0, 3] / 2 + 0.1
    p = np.array([[box[0, 0] + off * c, box[0, 1] + off * s, box[0, 2], 0.3]], np.float32)
    no_margin = GTSampler(d, GTSamplingConfig(sample_counts={str(d.names[0]): 1}, min_points=0,
                                              drop_difficulties=()))
    margin = GTSampler(d, GTSamplingConfig(sample_counts={str(d.names[0]): 1}, min_points=0,
                                           drop_difficulties=(), remove_extra_width=(0.4, 0.4, 0.4)))
    empty_b, empty_n = np.zeros((0, 7), np.float32), np.zeros(0, str)
    out1 = no_margin(p, empty_b, empty_n, rng)[0]
    out2 = margin(p, empty_b, empty_n, rng)[0]
    assert len(out1) == d.num_points[0] + 1 and len(out2) == d.num_points[0]
