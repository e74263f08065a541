"""Box conventions, points-in-box (vs brute force), camera<->LiDAR, NMS and box coder."""
import math

import numpy as np
import pytest
import shapely
import torch

from clean_deploy.geometry.boxes import (alpha_from_ry, bev_corners, boxes_camera_to_lidar,
                                         boxes_camera_to_pseudo_lidar, boxes_lidar_to_camera,
                                         boxes_to_image, corners_3d, points_in_boxes_index,
                                         points_in_boxes_mask)
from clean_deploy.geometry.calib import Calibration, kitti_default_calibration
from clean_deploy.geometry.coder import ResidualCoder
from clean_deploy.geometry.iou import iou_3d
from clean_deploy.geometry.nms import nms_rotated, nms_rotated_multiclass


def _boxes(rng, n):
    return np.stack([rng.uniform(5, 40, n), rng.uniform(-15, 15, n), rng.uniform(-1.5, 0, n),
                     rng.uniform(0.5, 5, n), rng.uniform(0.5, 2.5, n), rng.uniform(1, 2, n),
                     rng.uniform(-math.pi, math.pi, n)], 1)


def test_corners_area_and_orientation():
    rng = np.random.default_rng(0)
    b = _boxes(rng, 200)
    c = bev_corners(b)
    for box, poly in zip(b, c):
        p = shapely.Polygon(poly)
        assert p.exterior.is_ccw
        assert p.area == pytest.approx(box[3] * box[4])
        assert p.centroid.x == pytest.approx(box[0]) and p.centroid.y == pytest.approx(box[1])
    c3 = corners_3d(b)
    np.testing.assert_allclose(c3[:, 4:, 2] - c3[:, :4, 2], b[:, 5:6].repeat(4, 1))
    # heading: front edge midpoint (corners 0 and 3) lies along +yaw from the centre
    front = (c[:, 0] + c[:, 3]) / 2 - b[:, :2]
    np.testing.assert_allclose(np.arctan2(front[:, 1], front[:, 0]),
                               np.arctan2(np.sin(b[:, 6]), np.cos(b[:, 6])), atol=1e-9)


def test_points_in_boxes_against_brute_force():
    rng = np.random.default_rng(1)
    b = _boxes(rng, 25)
    pts = np.concatenate([rng.uniform([0, -20, -3], [45, 20, 1], (20000, 3)),
                          b[:, :3] + rng.normal(0, 0.5, (25, 3))])
    got = points_in_boxes_mask(pts, b)
    ref = np.zeros_like(got)
    for j, box in enumerate(b):  # brute force with shapely + height interval
        poly = shapely.Polygon(bev_corners(box[None])[0])
        inside2d = shapely.contains_xy(poly, pts[:, 0], pts[:, 1])
        ref[:, j] = inside2d & (np.abs(pts[:, 2] - box[2]) <= box[5] / 2)
    assert (got != ref).sum() == 0 and ref.sum() > 100
    idx = points_in_boxes_index(pts, b, chunk=777)
    first = np.where(ref.any(1), ref.argmax(1), -1)
    np.testing.assert_array_equal(idx, first)


def test_camera_lidar_round_trip_and_projection():
    calib = kitti_default_calibration()
    rng = np.random.default_rng(2)
    b = _boxes(rng, 50)
    cam = boxes_lidar_to_camera(b, calib)
    back = boxes_camera_to_lidar(cam, calib)
    np.testing.assert_allclose(back[:, :6], b[:, :6], atol=1e-9)
    np.testing.assert_allclose(np.cos(back[:, 6] - b[:, 6]), 1.0, atol=1e-12)
    # camera frame: y points down, the box's bottom is at the label location
    bottom_lidar = b[:, :3] - np.array([0, 0, 1]) * b[:, 5:6] / 2
    np.testing.assert_allclose(calib.lidar_to_rect(bottom_lidar), cam[:, :3], atol=1e-9)
    # calib text round trip
    calib2 = Calibration.from_text(calib.to_text())
    np.testing.assert_allclose(calib2.velo_to_rect, calib.velo_to_rect, atol=1e-10)
    # 2D box encloses every projected corner in front of the camera
    box2d = boxes_to_image(b[:3], calib)
    uv, depth = calib.lidar_to_img(corners_3d(b[:3]).reshape(-1, 3))
    uv = uv.reshape(3, 8, 2)
    assert (uv[..., 0] >= box2d[:, None, 0] - 1e-6).all() and (uv[..., 0] <= box2d[:, None, 2] + 1e-6).all()
    # a car 10 m straight ahead: its centre projects inside its 2D box, near the principal
    # point column, and the box's height is roughly focal * h / depth
    ahead = np.array([[10.0, 0.0, -0.9, 4, 1.6, 1.5, 0]])
    x1, y1, x2, y2 = boxes_to_image(ahead, calib)[0]
    (u, v), = calib.lidar_to_img(ahead[:, :3])[0]
    assert x1 < u < x2 and y1 < v < y2 and abs(u - 609.6) < 10
    # near face ~8.3 m from the camera; KITTI's ~0.85 deg LiDAR-camera pitch adds ~10%
    assert 0.9 < (y2 - y1) / (721.5 * 1.5 / 8.27) < 1.2
    assert alpha_from_ry(0.0, 0.0, 10.0) == pytest.approx(0.0)


def test_pseudo_lidar_preserves_iou():
    calib = kitti_default_calibration()
    rng = np.random.default_rng(3)
    a, b = _boxes(rng, 40), _boxes(rng, 40)
    b[:20] = a[:20] + rng.normal(0, 0.3, (20, 7))
    b[:, 3:6] = np.abs(b[:, 3:6])
    # the pseudo-lidar mapping ignores the (slightly rotated) real calibration; compare with a
    # calibration-free camera frame built from the same mapping's inverse
    cam_a, cam_b = boxes_lidar_to_camera(a, calib), boxes_lidar_to_camera(b, calib)
    pa, pb = boxes_camera_to_pseudo_lidar(cam_a), boxes_camera_to_pseudo_lidar(cam_b)
    # rigid motions preserve volumes and the BEV shape up to the small R0/Tr tilt (<1 deg)
    np.testing.assert_allclose(pa[:, 3:6], a[:, 3:6])
    np.testing.assert_allclose(iou_3d(pa, pb).diagonal()[:20], iou_3d(a, b).diagonal()[:20], atol=0.03)


def test_nms_rotated_greedy():
    boxes = torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0.0],
                          [0.2, 0, 0, 4, 2, 1.5, 0.05],   # duplicate of 0 (IoU ~0.85)
                          [10.0, 0, 0, 4, 2, 1.5, 0.0],
                          [10.0, 1.0, 0, 4, 2, 1.5, 0.0],  # IoU with 2 = 1/3
                          [0.0, 0, 0, 4, 2, 1.5, math.pi / 2]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.95, 0.5, 0.6, 0.3], dtype=torch.float64)
    keep = nms_rotated(boxes, scores, 0.5)
    # 1 suppresses 0; 3 and 2 overlap 1/3 < 0.5 -> both kept; 4 (crossing) IoU with 1 = 4/12
    assert keep.tolist() == [1, 3, 2, 4]
    assert nms_rotated(boxes, scores, 0.3).tolist() == [1, 3]
    assert nms_rotated(boxes, scores, 0.5, post_max=2).tolist() == [1, 3]
    labels = torch.tensor([0, 1, 0, 0, 0])
    # class-aware: 0 and 1 differ in class, so both survive; 4 suppressed by 0 at thr 0.3
    assert nms_rotated_multiclass(boxes, scores, labels, {0: 0.3, 1: 0.3}).tolist() == [1, 0, 3]
    assert nms_rotated(boxes[:0], scores[:0], 0.5).numel() == 0


@pytest.mark.parametrize("sincos", [False, True])
def test_residual_coder_round_trip(sincos):
    rng = np.random.default_rng(4)
    anchors = torch.from_numpy(_boxes(rng, 100))
    gt = torch.from_numpy(_boxes(rng, 100))
    coder = ResidualCoder(sincos=sincos)
    codes = coder.encode(gt, anchors)
    assert codes.shape == (100, coder.code_size)
    dec = coder.decode(codes, anchors)
    torch.testing.assert_close(dec[:, :6], gt[:, :6])
    torch.testing.assert_close(torch.cos(dec[:, 6] - gt[:, 6]), torch.ones(100, dtype=torch.float64))
    # identity box encodes to zeros
    assert coder.encode(anchors, anchors).abs().max() < 1e-12


def test_nms_kernel_iou_matches_vectorised_iou():
    """The numba kernel's rectangle clipping agrees with the torch polygon-clipping IoU."""
    from clean_deploy.geometry.iou import iou_bev
    from clean_deploy.geometry.nms_kernel import _corners, rect_iou_bev
    rng = np.random.default_rng(5)
    a = _boxes(rng, 300)
    b = a + rng.normal(0, 0.5, a.shape) * np.array([1, 1, 0, 0.2, 0.2, 0, 0.5])
    b[:, 3:6] = np.abs(b[:, 3:6]) + 0.1
    ref = iou_bev(a, b).diagonal()
    ca, cb = np.empty((4, 2)), np.empty((4, 2))
    buf1, buf2 = np.empty((16, 2)), np.empty((16, 2))
    got = []
    for x, y in zip(a, b):
        _corners(x, ca)
        _corners(y, cb)
        got.append(rect_iou_bev(x, y, ca, cb, buf1, buf2))
    np.testing.assert_allclose(got, ref, atol=1e-9)
    # greedy NMS equals brute-force greedy over the full IoU matrix
    boxes = torch.from_numpy(np.concatenate([a[:60], b[:60]]))
    scores = torch.from_numpy(rng.random(120))
    keep = nms_rotated(boxes, scores, 0.3)
    order = scores.argsort(descending=True)
    over = iou_bev(boxes[order], boxes[order]).numpy() > 0.3
    alive = np.ones(120, bool)
    for i in range(120):
        if alive[i]:
            alive[i + 1:] &= ~over[i, i + 1:]
    assert keep.tolist() == order[torch.from_numpy(np.flatnonzero(alive))].tolist()
    # a cap stops the greedy loop early: the first post_max of the brute-force result, every cap
    full = order[torch.from_numpy(np.flatnonzero(alive))].tolist()
    for cap in (0, 1, 5, len(full) - 1, len(full), len(full) + 3):
        assert nms_rotated(boxes, scores, 0.3, post_max=cap).tolist() == full[:cap]
    labels = torch.from_numpy(rng.integers(0, 3, 120))
    full_mc = nms_rotated_multiclass(boxes, scores, labels, 0.3).tolist()
    for cap in (0, 3, len(full_mc), len(full_mc) + 2):
        assert nms_rotated_multiclass(boxes, scores, labels, 0.3, post_max=cap).tolist() == full_mc[:cap]
    # the kernel itself stops: its mask holds exactly the first `cap` kept boxes
    from clean_deploy.geometry.nms import nms_rotated_ordered
    uncapped = nms_rotated_ordered(boxes[order], None, 0.3, 0.3)
    for cap in (0, 4, int(uncapped.sum()) + 1):
        capped = nms_rotated_ordered(boxes[order], None, 0.3, 0.3, max_keep=cap)
        assert int(capped.sum()) == min(cap, int(uncapped.sum()))
        assert torch.equal(capped.nonzero().flatten(), uncapped.nonzero().flatten()[:cap])
