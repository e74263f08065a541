"""Rotated BEV/3D IoU against shapely polygons on thousands of random boxes, plus edge cases."""
import math

import numpy as np
import pytest
import shapely
import torch

from clean_deploy.geometry.boxes import bev_corners
from clean_deploy.geometry.iou import (iou_3d, iou_3d_paired, iou_bev, iou_bev_nearest,
                                       iou_bev_paired)


def _random_boxes(rng, n, spread=4.0):
    return np.stack([
        rng.uniform(-spread, spread, n), rng.uniform(-spread, spread, n), rng.uniform(-1, 1, n),
        rng.uniform(0.3, 5, n), rng.uniform(0.3, 3, n), rng.uniform(0.5, 2.5, n),
        rng.uniform(-2 * math.pi, 2 * math.pi, n)], 1)


def _shapely_iou(a, b, three_d):
    pa, pb = shapely.Polygon(bev_corners(a[None])[0]), shapely.Polygon(bev_corners(b[None])[0])
    inter = pa.intersection(pb).area
    if not three_d:
        return inter / (pa.area + pb.area - inter)
    hz = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
    vi = inter * hz
    return vi / (a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - vi)


@pytest.mark.parametrize("three_d", [False, True])
def test_pairwise_iou_matches_shapely(three_d):
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 60), _random_boxes(rng, 70)
    got = (iou_3d if three_d else iou_bev)(a, b)
    ref = np.array([[_shapely_iou(x, y, three_d) for y in b] for x in a])
    assert got.shape == (60, 70)
    assert (ref > 0.01).sum() > 200, "the random set must contain many overlapping pairs"
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_paired_iou_matches_shapely_on_near_duplicates():
    # thousands of pairs of near-identical boxes: the hard case for polygon clipping
    rng = np.random.default_rng(1)
    a = _random_boxes(rng, 3000)
    b = a.copy()
    b[:, :2] += rng.normal(0, 0.2, (3000, 2)) * (rng.random((3000, 1)) < 0.7)
    b[:, 6] += rng.choice([0.0, math.pi / 2, math.pi, 1e-7, 0.05], 3000)
    b[:, 3:5] *= rng.choice([1.0, 1.1], (3000, 1))
    got_bev = iou_bev_paired(a, b)
    got_3d = iou_3d_paired(a, b)
    ref_bev = np.array([_shapely_iou(x, y, False) for x, y in zip(a, b)])
    ref_3d = np.array([_shapely_iou(x, y, True) for x, y in zip(a, b)])
    np.testing.assert_allclose(got_bev, ref_bev, atol=1e-7)
    np.testing.assert_allclose(got_3d, ref_3d, atol=1e-7)


def test_special_cases():
    box = np.array([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.3]])
    assert iou_bev(box, box)[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert iou_3d(box, box)[0, 0] == pytest.approx(1.0, abs=1e-12)
    # heading flipped by pi is the same rectangle
    flipped = box.copy()
    flipped[0, 6] += math.pi
    assert iou_bev(box, flipped)[0, 0] == pytest.approx(1.0, abs=1e-9)
    # nested: small box fully inside -> IoU = area ratio
    inner = box.copy()
    inner[0, 3:5] = [2.0, 1.0]
    assert iou_bev(box, inner)[0, 0] == pytest.approx(2.0 / 8.0, abs=1e-12)
    # touching edges -> 0; disjoint -> 0; separated in height only -> BEV 1, 3D 0
    a = np.array([[0.0, 0, 0, 2, 2, 2, 0]])
    touch = np.array([[2.0, 0, 0, 2, 2, 2, 0]])
    assert iou_bev(a, touch)[0, 0] == pytest.approx(0.0, abs=1e-12)
    above = np.array([[0.0, 0, 3, 2, 2, 2, 0]])
    assert iou_bev(a, above)[0, 0] == pytest.approx(1.0)
    assert iou_3d(a, above)[0, 0] == 0.0
    # half overlap along x, half in z: 3D IoU = (2*1*... ) hand computed
    half = np.array([[1.0, 0, 1, 2, 2, 2, 0]])
    # inter = 1*2*1 = 2, union = 8+8-2 = 14
    assert iou_3d(a, half)[0, 0] == pytest.approx(2 / 14)
    # 45 deg square inside a bigger square: octagon overlap, checked against shapely
    d = np.array([[0.0, 0, 0, 2, 2, 2, math.pi / 4]])
    assert iou_bev(a, d)[0, 0] == pytest.approx(_shapely_iou(a[0], d[0], False), abs=1e-12)


def test_torch_inputs_and_empty():
    a = torch.tensor([[0.0, 0, 0, 2, 2, 2, 0.1]], dtype=torch.float32)
    out = iou_bev(a, a)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.item() == pytest.approx(1.0, abs=1e-6)
    assert iou_3d(np.zeros((0, 7)), np.zeros((3, 7))).shape == (0, 3)


def test_nearest_bev_iou():
    a = np.array([[0.0, 0, 0, 4, 2, 1, 0.1]])  # snaps to axis-aligned 4x2
    b = np.array([[0.0, 0, 0, 4, 2, 1, math.pi / 2 - 0.1]])  # snaps to 2x4
    # 4x2 vs 2x4 centred: inter 2*2=4, union 8+8-4=12
    assert iou_bev_nearest(a, b)[0, 0] == pytest.approx(4 / 12)
    assert iou_bev_nearest(a, a)[0, 0] == pytest.approx(1.0)


def test_bev_overlap_matches_exact_iou_positive():
    """The separating-axis overlap test (GT sampling) against the exact rotated BEV IoU > 0, on
    random boxes with many near-touching pairs."""
    from clean_deploy.geometry.boxes import bev_overlap
    from clean_deploy.geometry.iou import iou_bev

    rng = np.random.default_rng(0)
    n = 300
    boxes = np.zeros((n, 7))
    boxes[:, :2] = rng.uniform(-6, 6, (n, 2))
    boxes[:, 3:5] = rng.uniform(0.3, 4.5, (n, 2))
    boxes[:, 5] = 1.5
    boxes[:, 6] = rng.uniform(-np.pi, np.pi, n)
    boxes[::7, 6] = 0.0  # axis-aligned ones too
    got = bev_overlap(boxes[:150], boxes[150:])
    want = iou_bev(boxes[:150], boxes[150:]) > 1e-9
    assert 0.05 < want.mean() < 0.95
    # pairs whose exact IoU is within float noise of 0 may go either way
    iou = iou_bev(boxes[:150], boxes[150:])
    decided = (iou > 1e-6) | (iou == 0)
    assert np.array_equal(got[decided], want[decided])
    assert bev_overlap(boxes[:3], boxes[:3]).diagonal().all()
    assert bev_overlap(boxes[:0], boxes).shape == (0, n)
    # two unit squares touching along an edge share no area
    sq = np.array([[0, 0, 0, 1, 1, 1, 0], [1, 0, 0, 1, 1, 1, 0], [0.99, 0, 0, 1, 1, 1, 0]], dtype=float)
    assert bev_overlap(sq[:1], sq[1:]).tolist() == [[False, True]]
