"""True-positive box errors (clean_deploy.eval.tp_errors) against independent references: shapely
for the aligned-size IoU, a literal loop for the greedy matching, hand-built pairs with known
errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from shapely import affinity

from clean_deploy.data.kitti.label import LabelArrays
from clean_deploy.eval.tp_errors import aligned_size_iou, tp_errors, wrap_angle


def frame(names, loc, dims, ry, score=None) -> LabelArrays:
    n = len(names)
    return LabelArrays(name=np.array(names, dtype=str).reshape(n), truncated=np.zeros(n), occluded=np.zeros(n, dtype=np.int64),
                       alpha=np.zeros(n), bbox=np.zeros((n, 4)), dimensions=np.asarray(dims, float).reshape(n, 3),
                       location=np.asarray(loc, float).reshape(n, 3), rotation_y=np.asarray(ry, float).reshape(n),
                       score=np.zeros(n) if score is None else np.asarray(score, float).reshape(n))


def shapely_iou_same_centre(a, b, ry) -> float:
    """3D IoU of two boxes (h, w, l) sharing centre and heading ``ry``, from BEV polygons."""
    def poly(d):
        h, w, l = d
        return affinity.rotate(shapely.box(-l / 2, -w / 2, l / 2, w / 2), ry, use_radians=True)
    inter = poly(a).intersection(poly(b)).area * min(a[0], b[0])
    va, vb = np.prod(a), np.prod(b)
    return inter / (va + vb - inter)


def test_aligned_size_iou_matches_shapely():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 5, (50, 3))
    b = rng.uniform(0.5, 5, (50, 3))
    ry = rng.uniform(-math.pi, math.pi, 50)
    ref = [shapely_iou_same_centre(x, y, r) for x, y, r in zip(a, b, ry)]
    np.testing.assert_allclose(aligned_size_iou(a, b), ref, rtol=1e-9)


def test_wrap_angle():
    np.testing.assert_allclose(wrap_angle([0.1, -0.1, 2 * math.pi - 0.1, math.pi, 3 * math.pi]), [0.1, 0.1, 0.1, math.pi, math.pi])
    np.testing.assert_allclose(wrap_angle([math.pi, math.pi / 2 + 0.1, -0.2], math.pi), [0, math.pi / 2 - 0.1, 0.2], atol=1e-12)


def test_known_errors_of_one_pair():
    gt = frame(["Car"], [[1.0, 1.6, 20.0]], [[1.5, 1.6, 4.0]], [math.pi - 0.05])
    # shifted 0.3 m in x and 0.4 m in z (BEV distance 0.5), 0.2 m down, heading across the wrap
    dt = frame(["Car"], [[1.3, 1.8, 20.4]], [[1.5, 1.6, 3.6]], [-math.pi + 0.05], [0.9])
    r = tp_errors([gt], [dt], ["Car"])["Car"]
    assert (r["objects"], r["true_positives"], r["recall"]) == (1, 1, 1.0)
    assert r["translation"]["mean"] == pytest.approx(0.5)
    assert r["height"]["mean"] == pytest.approx(0.2)
    assert r["orientation"]["mean"] == pytest.approx(0.1)
    assert r["orientation_axis"]["mean"] == pytest.approx(0.1)
    assert r["scale"]["mean"] == pytest.approx(1 - 3.6 / 4.0)
    assert r["orientation_axis"]["frac_off"] == 0.0 and r["orientation"]["frac_reversed"] == 0.0
    # KITTI's location is the bottom centre: a box 0.4 m taller standing on the same ground has its
    # centre 0.2 m higher (camera y points down)
    tall = frame(["Car"], [[1.0, 1.6, 20.0]], [[1.9, 1.6, 4.0]], [math.pi - 0.05], [0.9])
    assert tp_errors([gt], [tall], ["Car"])["Car"]["height"]["mean"] == pytest.approx(0.2)
    # a reversed box: pi off in heading, but its axis (what the IoU sees) is right
    rev = frame(["Car"], [[1.0, 1.6, 20.0]], [[1.5, 1.6, 4.0]], [-0.05], [0.9])
    r = tp_errors([gt], [rev], ["Car"])["Car"]
    assert r["orientation"]["mean"] == pytest.approx(math.pi)
    assert r["orientation_axis"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert r["orientation"]["frac_reversed"] == 1.0 and r["orientation_axis"]["frac_off"] == 0.0


def test_matching_is_greedy_by_score_within_the_distance():
    gt = frame(["Car", "Car", "Van", "DontCare"], [[0, 1, 10], [8, 1, 10], [20, 1, 10], [30, 1, 10]],
               [[1.5, 1.6, 4]] * 4, [0] * 4)
    dt = frame(["Car"] * 5,
               [[0.5, 1, 10], [0.1, 1, 10],  # two near object 0: the higher score takes it, although farther
                [8, 1, 12.5],                # 2.5 m from object 1: no match at 2 m
                [20, 1, 10], [30, 1, 10]],   # on the Van and the DontCare: never matched as cars
               [[1.5, 1.6, 4]] * 5, [0] * 5, [0.9, 0.5, 0.8, 0.7, 0.6])
    r = tp_errors([gt], [dt], ["Car"])["Car"]
    assert (r["objects"], r["true_positives"]) == (2, 1)
    assert r["translation"]["mean"] == pytest.approx(0.5)
    r = tp_errors([gt], [dt], ["Car"], match_dist=3.0)["Car"]
    assert r["true_positives"] == 2 and r["translation"]["mean"] == pytest.approx((0.5 + 2.5) / 2)
    # min_score drops the 0.8 detection: object 1 stays unmatched even at 3 m
    r = tp_errors([gt], [dt], ["Car"], min_score=0.85, match_dist=3.0)["Car"]
    assert r["true_positives"] == 1 and r["translation"]["mean"] == pytest.approx(0.5)
    r = tp_errors([gt], [dt], ["Car"], min_score=0.4)["Car"]
    assert r["true_positives"] == 1 and r["translation"]["mean"] == pytest.approx(0.5)


def reference_errors(gt, dt, cls, match_dist):
    """Literal loop: per frame, detections by descending score, nearest free object within reach."""
    trans, orient = [], []
    for g, d in zip(gt, dt):
        objs = [i for i in range(len(g)) if g.name[i] == cls]
        dets = sorted((i for i in range(len(d)) if d.name[i] == cls), key=lambda i: -d.score[i])
        free = set(objs)
        for i in dets:
            best, best_d = None, match_dist
            for j in sorted(free):
                dist = math.hypot(d.location[i, 0] - g.location[j, 0], d.location[i, 2] - g.location[j, 2])
                if dist <= best_d and (best is None or dist < best_d):
                    best, best_d = j, dist
            if best is not None:
                free.discard(best)
                trans.append(best_d)
                a = abs(d.rotation_y[i] - g.rotation_y[best]) % (2 * math.pi)
                orient.append(min(a, 2 * math.pi - a))
    return trans, orient


def test_random_scenes_match_the_literal_loop():
    rng = np.random.default_rng(3)
    gts, dts = [], []
    for _ in range(20):
        ng, nd = rng.integers(0, 12), rng.integers(0, 20)
        gts.append(frame(rng.choice(["Car", "Pedestrian"], ng), rng.uniform(0, 8, (ng, 3)), rng.uniform(0.5, 4, (ng, 3)),
                         rng.uniform(-math.pi, math.pi, ng)))
        dts.append(frame(rng.choice(["Car", "Pedestrian"], nd), rng.uniform(0, 8, (nd, 3)), rng.uniform(0.5, 4, (nd, 3)),
                         rng.uniform(-math.pi, math.pi, nd), rng.permutation(nd) / max(nd, 1)))
    for cls in ("Car", "Pedestrian"):
        trans, orient = reference_errors(gts, dts, cls, 2.0)
        r = tp_errors(gts, dts, [cls])[cls]
        assert r["true_positives"] == len(trans) > 10
        assert r["objects"] == sum(int((g.name == cls).sum()) for g in gts)
        assert r["translation"]["mean"] == pytest.approx(np.mean(trans), rel=1e-12)
        assert r["translation"]["median"] == pytest.approx(np.median(trans), rel=1e-12)
        assert r["orientation"]["mean"] == pytest.approx(np.mean(orient), rel=1e-12)


def test_no_true_positive_gives_nan_and_frame_counts_must_agree():
    gt = frame(["Car"], [[0, 1, 10]], [[1.5, 1.6, 4]], [0])
    r = tp_errors([gt], [frame([], [], [], [])], ["Car", "Cyclist"])
    assert r["Car"]["true_positives"] == 0 and math.isnan(r["Car"]["orientation"]["median"])
    assert r["Cyclist"]["objects"] == 0 and math.isnan(r["Cyclist"]["recall"])
    with pytest.raises(ValueError, match="2 ground-truth frames but 1"):
        tp_errors([gt, gt], [gt], ["Car"])
