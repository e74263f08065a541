"""KITTI evaluator: hand-computed APs, each protocol rule in isolation, a literal loop-based devkit
reference on random data, the pseudo-LiDAR IoU path, file/dir API, CLI and speed."""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import shapely

from clean_deploy.data.kitti.label import KittiObject, LabelArrays, LabelError, to_arrays
from clean_deploy.eval import evaluate, evaluate_dirs, format_table
from clean_deploy.eval.kitti_protocol import DIFFICULTIES, EvalData, get_thresholds
from clean_deploy.geometry.boxes import boxes_camera_to_pseudo_lidar
from clean_deploy.geometry.iou import iou_3d, iou_bev

METRICS4 = ("3d", "bev", "bbox", "aos")
R11_HALF = 6 / 11 * 100  # 21 thresholds of precision 1: R11 points 0, .1, .., .5 -> 6/11


# ---------------------------------------------------------------------------------------------
# construction helpers
# ---------------------------------------------------------------------------------------------

def obj(name: str = "Car", *, x: float = 0.0, z: float = 20.0, ry: float = 0.0,
        bbox: tuple = (100.0, 100.0, 200.0, 180.0), dims: tuple | None = None,
        trunc: float = 0.0, occ: int = 0, alpha: float | None = None,
        score: float | None = None) -> KittiObject:
    """An object at (x, 1.6, z) camera (bottom centre), ``dims`` h w l (class default)."""
    default = {"Car": (1.5, 1.6, 4.0), "Van": (2.2, 1.9, 5.0), "Truck": (3.0, 2.5, 9.0),
               "Pedestrian": (1.75, 0.6, 0.8), "Person_sitting": (1.3, 0.6, 0.8),
               "Cyclist": (1.7, 0.6, 1.8)}
    return KittiObject(name, trunc, occ, ry if alpha is None else alpha, tuple(bbox),
                       dims or default[name], (x, 1.6, z), ry, score)


def det(o: KittiObject, score: float, **changes) -> KittiObject:
    """A detection copying ``o`` (a GT) with a score and optional field changes."""
    return dataclasses.replace(o, score=score, **changes)


def arrays(frames: list[list[KittiObject]]) -> list[LabelArrays]:
    return [to_arrays(f) for f in frames]


def scores(n: int, top: float = 1.0) -> list[float]:
    """n distinct descending scores."""
    return [top - k / (2 * n) for k in range(n)]


def assert_all(result: dict, cls: str, value: float, metrics=METRICS4, r11: float | None = None,
               difficulties=DIFFICULTIES) -> None:
    for m in metrics:
        for d in difficulties:
            assert result[cls][m][d] == pytest.approx(value, abs=1e-6), (cls, m, d, "R40")
            want11 = value if r11 is None else r11
            assert result["_R11"][cls][m][d] == pytest.approx(want11, abs=1e-6), (cls, m, d, "R11")


FAR = dict(x=8.0, z=40.0, bbox=(600.0, 150.0, 700.0, 230.0))  # a place no GT of these tests uses


# ---------------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------------

def test_perfect_predictions_give_100_everywhere():
    n = 80
    gts = [[obj("Car"), obj("Pedestrian", x=-5, z=15, bbox=(300, 100, 330, 190)),
            obj("Cyclist", x=5, z=12, bbox=(500, 100, 560, 200))] for _ in range(n)]
    dts = [[det(o, s) for o in f] for f, s in zip(gts, scores(n))]
    res = evaluate(arrays(gts), arrays(dts))
    for cls in ("Car", "Pedestrian", "Cyclist"):
        assert_all(res, cls, 100.0)


def test_four_gt_hand_computed_ap():
    # 4 Car GT in one frame; detections (score, outcome): .9 TP, .8 FP, .7 TP, .6 TP, .5 FP; GT 3
    # missed. TP scores [.9, .7, .6], n_gt = 4: getThresholds keeps all three (recall steps of
    # 1/4 always overshoot the 1/40 sampling steps). Precision at those thresholds:
    # .9 -> 1/1, .7 -> 2/3, .6 -> 3/4; zero-padded to 41 points and made monotone from the right:
    # [1, .75, .75, 0, ...]. R40 = (.75 + .75) / 40 = 3.75 %; R11 uses points 0, 4, .., 40:
    # (1 + 0 * 10) / 11 = 9.0909 %. (The devkit indexes sample points by threshold rank, which
    # is why 4 GT cannot reach high AP: with < 41 thresholds the tail stays 0.)
    gt = [obj("Car", x=-9 + 6 * i, bbox=(100 + 200 * i, 100, 180 + 200 * i, 160)) for i in range(4)]
    fp = [obj("Car", x=9.0, z=50.0 + 10 * k, bbox=(900, 300 + 20 * k, 990, 345 + 20 * k))
          for k in range(2)]
    dt = [det(gt[0], .9), det(fp[0], .8), det(gt[1], .7), det(gt[2], .6), det(fp[1], .5)]
    res = evaluate(arrays([gt]), arrays([dt]), classes=("Car",))
    assert_all(res, "Car", 3.75, r11=100 / 11)


def test_half_recall_hand_computed_ap():
    # 80 GT, the first 40 detected, no FP. n_gt = 80, recall step 1/80: getThresholds keeps TP
    # ranks i = 0, 1, 3, 5, .., 39 (2i+3 >= 80 * 2 * current_recall) -> 21 thresholds, precision
    # 1 at sample points 0..20, 0 after. R40 = 20/40 = 50 %, R11 = points 0,4,..,20 -> 6/11.
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    dts = [[det(f[0], s)] if k < 40 else [] for k, (f, s) in enumerate(zip(gts, scores(n)))]
    assert_all(evaluate(arrays(gts), arrays(dts), ("Car",)), "Car", 50.0, r11=R11_HALF)


def test_false_positives_ranked_above_all_true_positives():
    # 80 GT all detected, plus one FP per frame scored above every TP. Thresholds: TP ranks 0 and
    # all odd ranks -> 41. At TP rank i, precision = (i+1)/(i+1+80), increasing in i, so the
    # right-monotone envelope is the last value 80/160 = .5 at every point: R40 = R11 = 50 %.
    # Scored below every TP the FPs never pass a threshold: 100 %.
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    above = [[det(f[0], s), det(obj("Car", **FAR), 2.0 + s)] for f, s in zip(gts, scores(n))]
    below = [[det(f[0], s), det(obj("Car", **FAR), s - 1.0)] for f, s in zip(gts, scores(n))]
    assert_all(evaluate(arrays(gts), arrays(above), ("Car",)), "Car", 50.0)
    assert_all(evaluate(arrays(gts), arrays(below), ("Car",)), "Car", 100.0)


def test_duplicate_detection_is_one_fp():
    # 80 GT, each with two identical detections A_k = 1 - k/100 and B_k = A_k - .005 (so
    # A_0 > B_0 > A_1 > B_1 ...). The highest-scored match is the TP: thresholds are A's at ranks
    # i = 0 and odd i. At threshold A_i: frames k < i hold A_k and B_k (1 TP + 1 FP each), frame
    # i holds A_i (TP): precision (i+1)/(2i+1), decreasing, so the envelope is the value itself.
    # Sample point p = 0 -> i = 0 -> 1; p >= 1 -> i = 2p-1 -> 2p/(4p-1).
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    dts = [[det(f[0], 1 - k / 100), det(f[0], 1 - k / 100 - .005)] for k, f in enumerate(gts)]
    prec = [1.0] + [2 * p / (4 * p - 1) for p in range(1, 41)]
    r40 = sum(prec[1:]) / 40 * 100
    r11 = sum(prec[::4]) / 11 * 100
    assert_all(evaluate(arrays(gts), arrays(dts), ("Car",)), "Car", r40, r11=r11)


@pytest.mark.parametrize("cls,iou,tp", [("Car", 0.71, True), ("Car", 0.69, False),
                                        ("Pedestrian", 0.51, True), ("Pedestrian", 0.49, False)])
def test_iou_threshold(cls, iou, tp):
    # shift along the box length l: BEV IoU = 3D IoU = (l - d) / (l + d)  ->  d = l (1-iou)/(1+iou)
    n = 80
    gt = obj(cls, bbox=(100, 100, 160, 200))
    length = gt.dimensions[2]
    shift = length * (1 - iou) / (1 + iou)
    gts = [[gt] for _ in range(n)]
    dts = [[det(gt, s, location=(shift, 1.6, 20.0))] for s in scores(n)]
    data = EvalData.build(arrays(gts), arrays(dts))
    assert data.overlaps["3d"][0] == pytest.approx(iou, abs=1e-12)
    assert data.overlaps["bev"][0] == pytest.approx(iou, abs=1e-12)
    res = evaluate(arrays(gts), arrays(dts), (cls,))
    assert_all(res, cls, 100.0 if tp else 0.0, metrics=("3d", "bev"))
    assert_all(res, cls, 100.0, metrics=("bbox", "aos"))  # the 2D box is unchanged


def test_overlap_exactly_at_threshold_is_not_a_match():
    # the devkit requires overlap > threshold: a 2D box covering 70 of the GT's 100 rows has
    # IoU 7000 / 10000 = 0.7 exactly (exact in floating point) -> no bbox/AOS match
    n = 80
    gts = [[obj("Car", bbox=(100, 100, 200, 200))] for _ in range(n)]
    dts = [[det(f[0], s, bbox=(100, 100, 200, 170))] for f, s in zip(gts, scores(n))]
    res = evaluate(arrays(gts), arrays(dts), ("Car",))
    assert_all(res, "Car", 0.0, metrics=("bbox", "aos"))
    assert_all(res, "Car", 100.0, metrics=("3d", "bev"))


@pytest.mark.parametrize("gt_name,det_name,ignored", [
    ("Van", "Car", True), ("Person_sitting", "Pedestrian", True),   # neighbouring classes
    ("Truck", "Car", False), ("Cyclist", "Pedestrian", False)])     # other classes: no effect
def test_neighbour_class_gt_is_ignored(gt_name, det_name, ignored):
    # every frame: a detected GT of the class, plus a GT of gt_name with a det_name detection on
    # it scored above every TP. Ignored -> neither TP nor FP (100 %); otherwise an FP (50 %, see
    # test_false_positives_ranked_above_all_true_positives).
    n = 80
    gts = [[obj(det_name), obj(gt_name, **FAR)] for _ in range(n)]
    dts = [[det(f[0], s), det(f[1], 2.0 + s, type=det_name)] for f, s in zip(gts, scores(n))]
    assert_all(evaluate(arrays(gts), arrays(dts), (det_name,)), det_name,
               100.0 if ignored else 50.0)


def test_detection_in_dontcare_region_is_ignored_in_2d_metrics():
    # DontCare labels carry placeholder 3D fields; the devkit (and OpenPCDet) only test the 2D
    # box: intersection / detection area > class IoU threshold -> the detection is ignored in
    # bbox/AOS, but an FP for BEV/3D (50 %, FP above every TP).
    n = 80
    dc = KittiObject("DontCare", -1, -1, -10, (580, 140, 720, 240), (-1, -1, -1),
                     (-1000, -1000, -1000), -10)
    gts = [[obj("Car"), dc] for _ in range(n)]
    inside = [[det(f[0], s), det(obj("Car", **FAR), 2.0 + s)] for f, s in zip(gts, scores(n))]
    res = evaluate(arrays(gts), arrays(inside), ("Car",))
    assert_all(res, "Car", 100.0, metrics=("bbox", "aos"))
    assert_all(res, "Car", 50.0, metrics=("3d", "bev"))
    # only 56 % of this detection's 2D box lies in the region (<= .7): an FP everywhere
    half = [[d0, det(d1, d1.score, bbox=(664, 150, 764, 230))] for d0, d1 in inside]
    assert_all(evaluate(arrays(gts), arrays(half), ("Car",)), "Car", 50.0)


# counted: an undetected GT is an FN -> 80 TP of 160 GT -> R40 50 %, R11 6/11 (thresholds at TP
# ranks 0, 3, 7, .., 79: 21 of them); ignored -> 80 of 80 -> 100 %.
@pytest.mark.parametrize("changes,counted", [
    (dict(bbox=(300, 100, 340, 130)), (False, True, True)),    # height 30
    (dict(bbox=(300, 100, 340, 140)), (False, True, True)),    # height 40: devkit needs > 40
    (dict(bbox=(300, 100, 340, 141)), (True, True, True)),     # height 41
    (dict(bbox=(300, 100, 340, 125)), (False, False, False)),  # height 25: needs > 25
    (dict(occ=1), (False, True, True)),
    (dict(occ=2), (False, False, True)),
    (dict(occ=3), (False, False, False)),
    (dict(trunc=0.15), (True, True, True)),                    # max truncation is inclusive
    (dict(trunc=0.2), (False, True, True)),
    (dict(trunc=0.4), (False, False, True)),
    (dict(trunc=0.6), (False, False, False)),
])
def test_difficulty_filters_on_ground_truth(changes, counted):
    n = 80
    hidden = dict(x=-8.0, z=30.0, bbox=(300, 100, 340, 180))
    hidden.update(changes)
    gts = [[obj("Car"), obj("Car", **hidden)] for _ in range(n)]
    dts = [[det(f[0], s)] for f, s in zip(gts, scores(n))]
    res = evaluate(arrays(gts), arrays(dts), ("Car",))
    for d, c in zip(DIFFICULTIES, counted):
        assert_all(res, "Car", 50.0 if c else 100.0, r11=R11_HALF if c else 100.0,
                   difficulties=(d,))


@pytest.mark.parametrize("height,counted", [(20, (False, False, False)), (25, (False, True, True)),
                                            (30, (False, True, True)), (40, (True, True, True))])
def test_min_height_on_detections(height, counted):
    # an FP above every TP with a 2D box `height` px tall: ignored below the difficulty's min
    # height (devkit: det height < min), otherwise an FP (50 %)
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    fp_box = (600.0, 150.0, 700.0, 150.0 + height)
    dts = [[det(f[0], s), det(obj("Car", x=8.0, z=40.0, bbox=fp_box), 2.0 + s)]
           for f, s in zip(gts, scores(n))]
    res = evaluate(arrays(gts), arrays(dts), ("Car",))
    for d, c in zip(DIFFICULTIES, counted):
        assert_all(res, "Car", 50.0 if c else 100.0, difficulties=(d,))


@pytest.mark.parametrize("d_alpha,aos", [(0.0, 100.0), (math.pi, 0.0), (math.pi / 2, 50.0),
                                         (-math.pi / 2, 50.0)])
def test_aos(d_alpha, aos):
    # every detection's heading and observation angle turned by d_alpha: similarity
    # (1 + cos d_alpha) / 2 per TP; AP is unchanged for d_alpha = pi (same box), so AOS = AP*sim
    n = 80
    gts = [[obj("Car", ry=0.3, alpha=0.2)] for _ in range(n)]
    turn = d_alpha if abs(d_alpha) == math.pi else 0.0  # keep the box itself for the pi/2 cases
    dts = [[det(f[0], s, rotation_y=0.3 + turn, alpha=0.2 + d_alpha)]
           for f, s in zip(gts, scores(n))]
    res = evaluate(arrays(gts), arrays(dts), ("Car",))
    assert_all(res, "Car", 100.0, metrics=("3d", "bev", "bbox"))
    assert_all(res, "Car", aos, metrics=("aos",))


def test_aos_is_nan_without_detection_orientation():
    # the devkit computes AOS only if every detection has an observation angle (alpha != -10)
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    dts = [[det(f[0], s, alpha=-10.0 if k == 3 else 0.0)]
           for k, (f, s) in enumerate(zip(gts, scores(n)))]
    res = evaluate(arrays(gts), arrays(dts), ("Car",))
    assert_all(res, "Car", 100.0, metrics=("3d", "bev", "bbox"))
    for table in (res, res["_R11"]):
        assert all(math.isnan(table["Car"]["aos"][d]) for d in DIFFICULTIES)
    assert "n/a" in format_table(res)


def test_aos_follows_ap_with_false_positives():
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    dts = [[det(f[0], s), det(obj("Car", **FAR), 2.0 + s)] for f, s in zip(gts, scores(n))]
    assert_all(evaluate(arrays(gts), arrays(dts), ("Car",)), "Car", 50.0, metrics=("aos",))


def test_empty_predictions_and_frames_without_gt():
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    assert_all(evaluate(arrays(gts), arrays([[] for _ in range(n)])), "Car", 0.0)
    # classes without any GT score 0
    assert_all(evaluate(arrays(gts), arrays([[det(f[0], .5)] for f in gts])), "Cyclist", 0.0)
    # 80 extra frames without GT, each with a high-scored Car detection: FPs above all TPs (50 %);
    # extra frames with neither change nothing
    dts = [[det(f[0], s)] for f, s in zip(gts, scores(n))]
    extra_dt = [[det(obj("Car"), 2.0 + s)] for s in scores(n)]
    res = evaluate(arrays(gts + [[]] * n + [[]] * 5), arrays(dts + extra_dt + [[]] * 5), ("Car",))
    assert_all(res, "Car", 50.0)


def test_get_thresholds_counts():
    assert len(get_thresholds(np.linspace(1, 0, 80, endpoint=False), 80)) == 41
    assert len(get_thresholds(np.linspace(1, 0, 40, endpoint=False), 80)) == 21
    assert len(get_thresholds(np.linspace(1, 0, 4000, endpoint=False), 4000)) == 41
    assert len(get_thresholds(np.zeros(0), 1)) == 0


# ---------------------------------------------------------------------------------------------
# literal loop-based reference of the devkit (OpenPCDet's port), with shapely IoU
# ---------------------------------------------------------------------------------------------

REF_MIN_OVERLAP = {"Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
REF_MIN_HEIGHT, REF_MAX_OCC, REF_MAX_TRUNC = [40, 25, 25], [0, 1, 2], [0.15, 0.3, 0.5]


def ref_camera_polygon(o: KittiObject) -> shapely.Polygon:
    """BEV footprint in the camera x-z plane, corners as in the KITTI devkit's computeBox3D."""
    h, w, l = o.dimensions
    c, s = math.cos(o.rotation_y), math.sin(o.rotation_y)
    pts = [(c * xc + s * zc + o.location[0], -s * xc + c * zc + o.location[2])
           for xc, zc in ((l / 2, w / 2), (l / 2, -w / 2), (-l / 2, -w / 2), (-l / 2, w / 2))]
    return shapely.Polygon(pts)


def ref_iou(metric: str, a: KittiObject, b: KittiObject) -> float:
    if metric == "bbox":
        iw = min(a.bbox[2], b.bbox[2]) - max(a.bbox[0], b.bbox[0])
        ih = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
        if iw <= 0 or ih <= 0:
            return 0.0
        area = lambda o: (o.bbox[2] - o.bbox[0]) * (o.bbox[3] - o.bbox[1])  # noqa: E731
        return iw * ih / (area(a) + area(b) - iw * ih)
    if a.dimensions[0] <= 0 or b.dimensions[0] <= 0:  # DontCare placeholders
        return 0.0
    pa, pb = ref_camera_polygon(a), ref_camera_polygon(b)
    inter = pa.intersection(pb).area
    if metric == "bev":
        return inter / (pa.area + pb.area - inter)
    # camera y points down; a box spans [y - h, y]
    dy = min(a.location[1], b.location[1]) - max(a.location[1] - a.dimensions[0],
                                                    b.location[1] - b.dimensions[0])
    if dy <= 0:
        return 0.0
    vol = lambda o: o.dimensions[0] * o.dimensions[1] * o.dimensions[2]  # noqa: E731
    return inter * dy / (vol(a) + vol(b) - inter * dy)


def ref_clean_data(gt, dt, cls, difficulty):
    cls_l = cls.lower()
    ignored_gt, ignored_dt, dc, num_valid = [], [], [], 0
    for g in gt:
        name = g.type.lower()
        height = g.bbox[3] - g.bbox[1]
        if name == cls_l:
            valid_class = 1
        elif cls_l == "pedestrian" and name == "person_sitting":
            valid_class = 0
        elif cls_l == "car" and name == "van":
            valid_class = 0
        else:
            valid_class = -1
        ignore = (g.occluded > REF_MAX_OCC[difficulty] or g.truncated > REF_MAX_TRUNC[difficulty]
                  or height <= REF_MIN_HEIGHT[difficulty])
        if valid_class == 1 and not ignore:
            ignored_gt.append(0)
            num_valid += 1
        elif valid_class == 0 or (ignore and valid_class == 1):
            ignored_gt.append(1)
        else:
            ignored_gt.append(-1)
        if name == "dontcare":
            dc.append(g)
    for d in dt:
        valid_class = 1 if d.type.lower() == cls_l else -1
        if abs(d.bbox[3] - d.bbox[1]) < REF_MIN_HEIGHT[difficulty]:
            ignored_dt.append(1)
        elif valid_class == 1:
            ignored_dt.append(0)
        else:
            ignored_dt.append(-1)
    return num_valid, ignored_gt, ignored_dt, dc


def ref_compute_statistics(ov, gt, dt, ignored_gt, ignored_det, dc, metric, min_overlap,
                           thresh=0.0, compute_fp=False):
    NO_DETECTION = -10000000
    assigned = [False] * len(dt)
    ignored_threshold = [compute_fp and d.score < thresh for d in dt]
    tp = fp = fn = 0
    thresholds, delta = [], []
    for i in range(len(gt)):
        if ignored_gt[i] == -1:
            continue
        det_idx, valid_detection, max_overlap, assigned_ignored_det = -1, NO_DETECTION, 0, False
        for j in range(len(dt)):
            if ignored_det[j] == -1 or assigned[j] or ignored_threshold[j]:
                continue
            overlap, dt_score = ov[j][i], dt[j].score
            if not compute_fp and overlap > min_overlap and dt_score > valid_detection:
                det_idx, valid_detection = j, dt_score
            elif (compute_fp and overlap > min_overlap
                  and (overlap > max_overlap or assigned_ignored_det) and ignored_det[j] == 0):
                max_overlap, det_idx, valid_detection, assigned_ignored_det = overlap, j, 1, False
            elif (compute_fp and overlap > min_overlap and valid_detection == NO_DETECTION
                  and ignored_det[j] == 1):
                det_idx, valid_detection, assigned_ignored_det = j, 1, True
        if valid_detection == NO_DETECTION and ignored_gt[i] == 0:
            fn += 1
        elif valid_detection != NO_DETECTION and (ignored_gt[i] == 1 or ignored_det[det_idx] == 1):
            assigned[det_idx] = True
        elif valid_detection != NO_DETECTION:
            tp += 1
            thresholds.append(dt[det_idx].score)
            delta.append(gt[i].alpha - dt[det_idx].alpha)
            assigned[det_idx] = True
    similarity = 0.0
    if compute_fp:
        for j in range(len(dt)):
            if not (assigned[j] or ignored_det[j] == -1 or ignored_det[j] == 1
                    or ignored_threshold[j]):
                fp += 1
        nstuff = 0
        if metric == "bbox":
            for c in dc:
                for j in range(len(dt)):
                    if assigned[j] or ignored_det[j] in (-1, 1) or ignored_threshold[j]:
                        continue
                    b, q = dt[j].bbox, c.bbox
                    iw = min(b[2], q[2]) - max(b[0], q[0])
                    ih = min(b[3], q[3]) - max(b[1], q[1])
                    ov_dc = iw * ih / ((b[2] - b[0]) * (b[3] - b[1])) if iw > 0 and ih > 0 else 0
                    if ov_dc > min_overlap:
                        assigned[j] = True
                        nstuff += 1
        fp -= nstuff
        similarity = sum((1.0 + math.cos(x)) / 2.0 for x in delta)
    return tp, fp, fn, similarity, thresholds


def ref_get_thresholds(scores_, num_gt, num_sample_pts=41):
    scores_ = sorted(scores_, reverse=True)
    current_recall, out = 0.0, []
    for i, score in enumerate(scores_):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < len(scores_) - 1 else l_recall
        if (r_recall - current_recall) < (current_recall - l_recall) and i < len(scores_) - 1:
            continue
        out.append(score)
        current_recall += 1 / (num_sample_pts - 1.0)
    return out


def ref_evaluate(gt_frames, dt_frames, classes):
    ovs = {m: [[[ref_iou(m, d, g) for g in gf] for d in df] for gf, df in zip(gt_frames, dt_frames)]
           for m in ("bbox", "bev", "3d")}
    out = {"R40": {}, "R11": {}}
    for cls in classes:
        for key in out:
            out[key][cls] = {m: {} for m in METRICS4}
        for di, dname in enumerate(DIFFICULTIES):
            cleaned = [ref_clean_data(g, d, cls, di) for g, d in zip(gt_frames, dt_frames)]
            num_valid = sum(c[0] for c in cleaned)
            for metric in ("bbox", "bev", "3d"):
                args = lambda f: (ovs[metric][f], gt_frames[f], dt_frames[f], cleaned[f][1],  # noqa
                                  cleaned[f][2], cleaned[f][3], metric, REF_MIN_OVERLAP[cls])
                tps = []
                for f in range(len(gt_frames)):
                    tps += ref_compute_statistics(*args(f))[4]
                thresholds = ref_get_thresholds(tps, num_valid) if num_valid else []
                prec, aos = [0.0] * 41, [0.0] * 41
                for t, th in enumerate(thresholds):
                    tp = fp = sim = 0
                    for f in range(len(gt_frames)):
                        s = ref_compute_statistics(*args(f), thresh=th, compute_fp=True)
                        tp, fp, sim = tp + s[0], fp + s[1], sim + s[3]
                    prec[t], aos[t] = tp / (tp + fp), sim / (tp + fp)
                for i in range(len(thresholds)):
                    prec[i], aos[i] = max(prec[i:]), max(aos[i:])
                curves = {metric: prec} if metric != "bbox" else {"bbox": prec, "aos": aos}
                for m, c in curves.items():
                    out["R40"][cls][m][dname] = sum(c[1:]) / 40 * 100
                    out["R11"][cls][m][dname] = sum(c[0::4]) / 11 * 100
    return out


def random_frames(rng: np.random.Generator, n_frames: int, max_objects: int = 8,
                  jitter_share: float = 0.7, score_decimals: int | None = None
                  ) -> tuple[list[list[KittiObject]], list[list[KittiObject]]]:
    """Random KITTI-like frames (all classes, DontCare, difficulty mix) and detections: jittered
    GT copies on a random subset of frames (perfect copies elsewhere, jitter strength varying by
    frame), misses, duplicates, class confusions, FPs (some inside DontCare regions). Scores
    rounded to ``score_decimals`` give many ties."""
    rnd = (lambda v: round(v, score_decimals)) if score_decimals is not None else float
    names = ["Car", "Car", "Car", "Car", "Pedestrian", "Pedestrian", "Cyclist", "Van",
             "Person_sitting", "Truck", "DontCare"]
    confuse = {"Van": "Car", "Truck": "Car", "Person_sitting": "Pedestrian",
               "Cyclist": "Pedestrian"}
    gts, dts = [], []
    for _ in range(n_frames):
        gt, dt = [], []
        for _ in range(rng.integers(0, max_objects + 1)):
            name = str(rng.choice(names))
            top = rng.uniform(100, 250)
            height = rng.choice([rng.uniform(15, 60), rng.uniform(20, 150), rng.uniform(40, 150)])
            left = rng.uniform(0, 1100)
            bbox = (left, top, left + height * rng.uniform(0.5, 2.5), top + height)
            if name == "DontCare":
                gt.append(KittiObject("DontCare", -1, -1, -10, bbox, (-1, -1, -1),
                                      (-1000, -1000, -1000), -10))
                continue
            if gt and gt[-1].type != "DontCare" and rng.random() < 0.3:  # a close neighbour
                x = gt[-1].location[0] + rng.uniform(1.5, 2.5)
                z = gt[-1].location[2] + rng.uniform(-1, 1)
            else:
                x, z = rng.uniform(-12, 12), rng.uniform(5, 45)
            o = obj(name, x=x, z=z, ry=rng.uniform(-math.pi, math.pi), bbox=bbox,
                    trunc=float(rng.choice([0.0, 0.0, 0.0, 0.0, 0.1, 0.15, 0.2, 0.4, 0.6])),
                    occ=int(rng.choice([0, 0, 0, 1, 2, 3])))
            o.dimensions = tuple(np.array(o.dimensions) * rng.uniform(0.9, 1.1, 3))
            o.alpha = o.rotation_y - math.atan2(x, z)
            gt.append(o)
        jitter = rng.random() < jitter_share
        sigma = float(rng.choice([0.02, 0.05, 0.1]))
        for o in gt:
            if o.type == "DontCare" or rng.random() < 0.15:
                continue
            for _ in range(1 + (rng.random() < 0.15)):  # sometimes a duplicate
                d = det(o, rnd(rng.random()))
                if rng.random() < 0.3 and o.type in confuse:
                    d.type = confuse[o.type]
                if jitter:
                    scale = np.array(o.dimensions)
                    d.location = tuple(np.array(o.location)
                                       + rng.normal(0, sigma, 3) * scale[[2, 0, 1]])
                    d.dimensions = tuple(scale * (1 + rng.normal(0, 0.05, 3)))
                    turn = rng.normal(0, 0.15) + (math.pi if rng.random() < 0.1 else 0.0)
                    d.rotation_y, d.alpha = o.rotation_y + turn, o.alpha + turn
                    d.bbox = tuple(np.array(o.bbox)
                                   + rng.normal(0, 0.06, 4) * (o.bbox[3] - o.bbox[1]))
                dt.append(d)
        for _ in range(rng.integers(0, 4)):  # false positives
            left, top, height = rng.uniform(0, 1100), rng.uniform(100, 250), rng.uniform(15, 120)
            bbox = (left, top, left + height, top + height)
            dcs = [o for o in gt if o.type == "DontCare"]
            if dcs and rng.random() < 0.5:
                b = dcs[0].bbox
                bbox = (b[0] + 1, b[1] + 1, b[2] - 1, b[3] - 1)
            dt.append(obj(str(rng.choice(["Car", "Pedestrian", "Cyclist"])), x=rng.uniform(-12, 12),
                          z=rng.uniform(5, 45), ry=rng.uniform(-3, 3), bbox=bbox,
                          score=rnd(rng.random())))
        rng.shuffle(dt)
        gts.append(gt)
        dts.append(dt)
    return gts, dts


@pytest.mark.parametrize("seed,score_decimals", [(0, None), (1, None), (2, 1)])
def test_matches_literal_devkit_reference_on_random_data(seed, score_decimals):
    rng = np.random.default_rng(seed)
    gts, dts = random_frames(rng, 300, max_objects=10, score_decimals=score_decimals)
    classes = ("Car", "Pedestrian", "Cyclist")
    got = evaluate(arrays(gts), arrays(dts), classes)
    ref = ref_evaluate(gts, dts, classes)
    interior = 0
    for cls in classes:
        for m in METRICS4:
            for d in DIFFICULTIES:
                assert got[cls][m][d] == pytest.approx(ref["R40"][cls][m][d], abs=1e-6), (cls, m, d)
                assert got["_R11"][cls][m][d] == pytest.approx(ref["R11"][cls][m][d], abs=1e-6)
                interior += 1 < got[cls][m][d] < 99
    assert interior >= 20, "random data should give many non-trivial APs"


def test_pseudo_lidar_iou_matches_camera_frame_shapely():
    a = [obj("Car", x=1.0, z=20.0, ry=0.3),
         obj("Car", x=-4.0, z=11.0, ry=-2.0, dims=(1.4, 1.7, 4.3)),
         obj("Cyclist", x=3.0, z=30.0, ry=1.2)]
    b = [dataclasses.replace(a[0], location=(1.6, 1.9, 20.4), rotation_y=0.6),
         dataclasses.replace(a[1], location=(-4.5, 1.2, 11.2), rotation_y=-1.7,
                             dimensions=(1.6, 1.8, 4.0)),
         dataclasses.replace(a[2], location=(3.3, 1.5, 29.8), rotation_y=1.0)]
    la = boxes_camera_to_pseudo_lidar(to_arrays(a).boxes_camera)
    lb = boxes_camera_to_pseudo_lidar(to_arrays(b).boxes_camera)
    for metric, fn in (("3d", iou_3d), ("bev", iou_bev)):
        got = fn(la, lb)
        ref = np.array([[ref_iou(metric, x, y) for y in b] for x in a])
        assert (np.diag(ref) > 0.2).all()
        np.testing.assert_allclose(got, ref, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# files, table, CLI, speed
# ---------------------------------------------------------------------------------------------

def write_dataset(root: Path, gts: list[list[KittiObject]], dts: list[list[KittiObject] | None]
                  ) -> tuple[Path, Path]:
    ids = [f"{i:06d}" for i in range(len(gts))]
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "val.txt").write_text("\n".join(ids) + "\n")
    labels, preds = root / "training" / "label_2", root / "preds"
    labels.mkdir(parents=True)
    preds.mkdir()
    for i, g, d in zip(ids, gts, dts):
        (labels / f"{i}.txt").write_text("".join(o.to_line() + "\n" for o in g))
        if d is not None:
            (preds / f"{i}.txt").write_text("".join(o.to_line() + "\n" for o in d))
    return root, preds


def rounded(frames: list[list[KittiObject]]) -> list[list[KittiObject]]:
    """What a write/read round trip gives (to_line rounds to 2 decimals, scores to 4)."""
    from clean_deploy.data.kitti.label import parse_line
    return [[parse_line(o.to_line()) for o in f] for f in frames]


def test_evaluate_dirs_reads_split_and_missing_prediction_files(tmp_path):
    gts, dts = random_frames(np.random.default_rng(3), 12)
    dts_files = [d if k % 4 else None for k, d in enumerate(dts)]  # every 4th result file missing
    data, preds = write_dataset(tmp_path, gts, dts_files)
    # a missing file silently counted as empty lowered the AP: refused unless allowed, with a warning
    with pytest.raises(FileNotFoundError, match=r"3 of the 12 result files of split 'val' are missing \(first: 000000"):
        evaluate_dirs(data, "val", preds)
    with pytest.warns(UserWarning, match="3 of 12 result files missing"):
        got = evaluate_dirs(data, "val", preds, allow_missing=True)
    want = evaluate(arrays(rounded(gts)), arrays(rounded([d or [] for d in dts_files])))
    assert got == want
    for i, d in enumerate(dts_files):  # empty files: no detections, no warning
        if d is None:
            (preds / f"{i:06d}.txt").write_text("")
    assert evaluate_dirs(data, "val", preds) == want


def test_duplicate_split_ids_are_refused(tmp_path):
    gts, dts = random_frames(np.random.default_rng(6), 4)
    data, preds = write_dataset(tmp_path, gts, dts)
    split = data / "ImageSets" / "val.txt"
    ids = split.read_text().split()
    split.write_text("\n".join(ids + [ids[1]]) + "\n")  # evaluated twice, it used to count twice
    with pytest.raises(ValueError, match=r"val\.txt:5: frame id '000001' is listed twice \(first on line 2\)"):
        evaluate_dirs(data, "val", preds)


def test_evaluate_dirs_errors(tmp_path):
    gts = [[obj("Car")], [obj("Car")]]
    data, preds = write_dataset(tmp_path, gts, [None, None])
    with pytest.raises(FileNotFoundError, match="none of the 2 result files"):
        evaluate_dirs(data, "val", preds)
    (preds / "000000.txt").write_text("")
    (preds / "000001.txt").write_text(obj("Car", score=0.5).to_line() + "\nCar 0 0 0 1 2 3\n")
    with pytest.raises(LabelError, match=r"000001\.txt:2"):
        evaluate_dirs(data, "val", preds)
    (preds / "000001.txt").write_text(obj("Car").to_line() + "\n")  # no score column
    with pytest.raises(LabelError, match=r"000001\.txt:1.*score"):
        evaluate_dirs(data, "val", preds)
    with pytest.raises(FileNotFoundError, match="split file"):
        evaluate_dirs(data, "test", preds)


def test_format_table():
    n = 80
    gts = [[obj("Car")] for _ in range(n)]
    dts = [[det(f[0], s)] if k < 40 else [] for k, (f, s) in enumerate(zip(gts, scores(n)))]
    text = format_table(evaluate(arrays(gts), arrays(dts)))
    for word in ("Car", "Pedestrian", "Cyclist", "3d", "bev", "bbox", "aos", "AP_R40", "AP_R11",
                 "easy", "moderate", "hard", "50.00", "54.55", "0.70"):
        assert word in text, word
    assert not any(line.startswith("_R11") for line in text.splitlines())  # not a class row


def test_cli_eval_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from clean_deploy.cli.eval import eval_command

    gts, dts = random_frames(np.random.default_rng(4), 10)
    data, preds = write_dataset(tmp_path / "kitti", gts, dts)
    app = typer.Typer()
    app.command()(eval_command)
    app.command("noop")(lambda: None)  # two commands: invoke by name as the real CLI does
    out = tmp_path / "out" / "ap.json"
    run = CliRunner().invoke(app, ["eval-command", "--data", str(data), "--pred", str(preds),
                                   "--json", str(out)])
    assert run.exit_code == 0, run.output
    assert "AP_R40" in run.output
    assert json.loads(out.read_text()) == evaluate_dirs(data, "val", preds)
    missing = CliRunner().invoke(app, ["eval-command", "--data", str(data)])
    assert missing.exit_code != 0 and "--pred" in missing.output


def test_speed_500_frames():
    rng = np.random.default_rng(5)
    gts, dts = random_frames(rng, 500, max_objects=30, jitter_share=1.0)
    for d in dts:  # top up to ~30 detections per frame with false positives
        while len(d) < 30:
            d.append(obj("Car", x=rng.uniform(-20, 20), z=rng.uniform(5, 60),
                         ry=rng.uniform(-3, 3), score=float(rng.random())))
    g, d = arrays(gts), arrays(dts)
    evaluate(g[:2], d[:2])  # compile / load the numba kernels
    t0 = time.perf_counter()
    evaluate(g, d)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10.0, f"500 frames took {elapsed:.1f} s"
