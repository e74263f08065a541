"""KITTI 3D object evaluation protocol (devkit semantics): difficulty filtering, matching,
score thresholds and AP_R40 / AP_R11 for 2D bbox, BEV, 3D and AOS."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from clean_deploy.data.kitti.label import LabelArrays
from clean_deploy.geometry.boxes import boxes_camera_to_pseudo_lidar
from clean_deploy.geometry.iou import iou_3d_paired, iou_bev_paired
from clean_deploy.kitti import KITTI_CLASSES, MAX_OCCLUSION, MAX_TRUNCATION, MIN_HEIGHT

# This follows the official devkit (``evaluate_object_3d_offline.cpp``) as ported in OpenPCDet's
# ``kitti_object_eval_python/eval.py``, step for step:
#
# * ``clean_data``: per class and difficulty every GT gets ``ignored_gt`` 0 (counted), 1 (ignored:
#   neighbouring class Van/Person_sitting, or failing the difficulty filter: occlusion > max,
#   truncation > max, 2D height <= min) or -1 (other class / DontCare, not used); every detection
#   gets ``ignored_dt`` 1 (2D height < min, any class), 0 (the class) or -1 (other class).
# * ``compute_statistics``: GTs in order each take one unassigned detection with overlap strictly
#   above the class threshold (the highest scored one when collecting thresholds; the most
#   overlapping non-ignored one, else any ignored one, when counting at a score threshold).
#   Matches involving an ignored GT or detection are neither TP nor FP. Unassigned detections of
#   the class above the threshold are FPs unless (2D bbox metric only, as in OpenPCDet; the C++
#   devkit tests the metric's own overlap against the DontCare label's placeholder 3D box, which
#   never overlaps) their 2D box lies inside a DontCare box: intersection / detection area > the
#   class threshold.
# * ``get_thresholds``: the TP scores, sorted, thinned to <= 41 so the i-th one sits near recall
#   i/40; precision at those thresholds, made monotone from the right, zero-padded to 41 points.
#   AP_R40 = mean of points 1..40, AP_R11 = mean of points 0, 4, ..., 40; AOS likewise with the
#   summed orientation similarity ``(1 + cos(alpha_gt - alpha_dt)) / 2`` of the TPs (2D bbox
#   matching) in place of the TP count. Values are in percent.
#
# Overlaps: 2D box IoU (no +1 pixel convention), exact rotated BEV / 3D IoU from
# :mod:`clean_deploy.geometry.iou` on camera boxes mapped rigidly to the LiDAR convention.
# Ties (equal scores or overlaps) go to the earlier detection of the frame, as in the devkit.

__all__ = [
    "DIFFICULTIES",
    "METRICS",
    "MIN_OVERLAP",
    "N_SAMPLE_PTS",
    "EvalData",
    "evaluate",
    "get_thresholds",
    "ignore_flags",
    "precision_curves",
    "ap_r40",
    "ap_r11",
]

DIFFICULTIES = ("easy", "moderate", "hard")
# the thresholds of clean_deploy.kitti; here in the devkit's clean_data form: a GT needs height
# > MIN_HEIGHT (one of exactly the minimum is ignored), a detection height >= MIN_HEIGHT
#: the official minimum overlap per class, the same for bbox, BEV and 3D (OpenPCDet: overlap_0_7)
MIN_OVERLAP = {"Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5, "Van": 0.7, "Person_sitting": 0.5,
               "Truck": 0.7}
#: GT classes ignored (neither TP nor FN, matches not FP) when evaluating the key class
NEIGHBOUR_CLASS = {"car": "van", "pedestrian": "person_sitting"}
#: "bbox" is 2D image-box AP; AOS is computed alongside it
METRICS = ("bbox", "bev", "3d")
N_SAMPLE_PTS = 41


# --------------------------------------------------------------------------------------------
# data preparation (vectorised over the whole data set)
# --------------------------------------------------------------------------------------------

def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _frame_pairs(off_a: np.ndarray, off_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (a, b) index pairs within each frame, frame by frame, ``a``-major (row-major blocks).

    Returns global indices ``ia``, ``ib`` and the (F+1,) offsets of each frame's block."""
    na, nb = np.diff(off_a), np.diff(off_b)
    pair_off = _offsets(na * nb)
    frame = np.repeat(np.arange(len(na)), na * nb)
    k = np.arange(pair_off[-1]) - pair_off[frame]
    cols = nb[frame]
    return off_a[frame] + k // np.maximum(cols, 1), off_b[frame] + k % np.maximum(cols, 1), pair_off


def _box2d_overlap(a: np.ndarray, b: np.ndarray, over_a: bool = False) -> np.ndarray:
    """Paired 2D overlap of ``x1 y1 x2 y2`` boxes: IoU, or intersection / area(a) if ``over_a``."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    denom = area_a if over_a else area_a + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / denom, 0.0)


def _rotated_overlap(dt: np.ndarray, gt: np.ndarray, three_d: bool) -> np.ndarray:
    """Paired exact BEV/3D IoU of LiDAR-convention boxes, computed only where the BEV bounding
    circles touch (elsewhere the IoU is exactly 0)."""
    out = np.zeros(len(dt))
    radius = lambda b: 0.5 * np.hypot(b[:, 3], b[:, 4])  # noqa: E731
    dist = np.hypot(dt[:, 0] - gt[:, 0], dt[:, 1] - gt[:, 1])
    cand = np.flatnonzero(dist <= (radius(dt) + radius(gt)) * (1 + 1e-9) + 1e-9)
    if len(cand):
        fn = iou_3d_paired if three_d else iou_bev_paired
        out[cand] = fn(dt[cand], gt[cand])
    return out


def _concat(annos: list[LabelArrays]) -> LabelArrays:
    fields = LabelArrays.__dataclass_fields__
    if not annos:
        raise ValueError("no frames to evaluate")
    return LabelArrays(**{k: np.concatenate([getattr(a, k) for a in annos]) for k in fields})


@dataclass
class EvalData:
    """A data set prepared once for all classes/difficulties: concatenated GT and detections,
    per-frame offsets and the flattened per-frame (detection x GT) overlap blocks per metric."""

    gt: LabelArrays
    dt: LabelArrays
    gt_off: np.ndarray  # (F+1,)
    dt_off: np.ndarray  # (F+1,)
    pair_off: np.ndarray  # (F+1,) offsets of the frames' (n_dt x n_gt) row-major blocks
    overlaps: dict[str, np.ndarray]  # metric -> flat overlaps
    dc_overlap: np.ndarray  # (n_dt,) max over the frame's DontCare boxes of inter / area(det)

    @classmethod
    def build(cls, gt_annos: list[LabelArrays], dt_annos: list[LabelArrays]) -> "EvalData":
        if len(gt_annos) != len(dt_annos):
            raise ValueError(f"{len(gt_annos)} GT frames but {len(dt_annos)} detection frames")
        gt, dt = _concat(gt_annos), _concat(dt_annos)
        gt_off = _offsets(np.array([len(a) for a in gt_annos]))
        dt_off = _offsets(np.array([len(a) for a in dt_annos]))
        idt, igt, pair_off = _frame_pairs(dt_off, gt_off)
        dt_lidar = np.asarray(boxes_camera_to_pseudo_lidar(dt.boxes_camera))
        gt_lidar = np.asarray(boxes_camera_to_pseudo_lidar(gt.boxes_camera))
        overlaps = {
            "bbox": _box2d_overlap(dt.bbox[idt], gt.bbox[igt]),
            "bev": _rotated_overlap(dt_lidar[idt], gt_lidar[igt], three_d=False),
            "3d": _rotated_overlap(dt_lidar[idt], gt_lidar[igt], three_d=True),
        }
        # DontCare regions (names compared case-insensitively, as everywhere in the C++ devkit)
        is_dc = np.char.lower(gt.name.astype(str)) == "dontcare"
        n_dc_before = np.concatenate([[0], np.cumsum(is_dc)])
        dc_off = n_dc_before[gt_off].astype(np.int64)
        jdt, jdc, _ = _frame_pairs(dt_off, dc_off)
        dc_ov = _box2d_overlap(dt.bbox[jdt], gt.bbox[is_dc][jdc], over_a=True)
        dc_overlap = np.zeros(len(dt))
        np.maximum.at(dc_overlap, jdt, dc_ov)
        return cls(gt, dt, gt_off, dt_off, pair_off, overlaps, dc_overlap)


def ignore_flags(gt: LabelArrays, dt: LabelArrays, cls: str,
                 difficulty: int) -> tuple[np.ndarray, np.ndarray]:
    """The devkit's ``clean_data`` for one class and difficulty index (0 easy, 1 moderate,
    2 hard): ``ignored_gt`` and ``ignored_dt`` in {0 counted, 1 ignored, -1 not this class}."""
    cls_l = cls.lower()
    gt_name = np.char.lower(gt.name.astype(str))
    valid = gt_name == cls_l
    neighbour = gt_name == NEIGHBOUR_CLASS.get(cls_l, "\0")
    gt_height = gt.bbox[:, 3] - gt.bbox[:, 1]  # devkit: y2 - y1 for GT, |y2 - y1| for detections
    too_hard = ((gt.occluded > MAX_OCCLUSION[difficulty])
                | (gt.truncated > MAX_TRUNCATION[difficulty])
                | (gt_height <= MIN_HEIGHT[difficulty]))
    ignored_gt = np.where(valid & ~too_hard, 0, np.where(neighbour | valid, 1, -1))
    dt_height = np.abs(dt.bbox[:, 3] - dt.bbox[:, 1])
    dt_valid = np.char.lower(dt.name.astype(str)) == cls_l
    ignored_dt = np.where(dt_height < MIN_HEIGHT[difficulty], 1, np.where(dt_valid, 0, -1))
    return ignored_gt.astype(np.int64), ignored_dt.astype(np.int64)


# --------------------------------------------------------------------------------------------
# devkit matching (numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _match_frame(ov, base, n_gt, gt_lo, gt_hi, dt_lo, dt_hi, ig_gt, ig_dt, score, in_dc,
                 gt_alpha, dt_alpha, min_overlap, thresh, compute_fp, tp_scores, n_scores):
    """The devkit's ``computeStatistics`` on one frame. ``ov[base + j * n_gt + i]`` is the
    overlap of the frame's detection j with its GT i. TP scores are appended to ``tp_scores``
    from ``n_scores`` on. Returns (tp, fp, fn, orientation similarity sum, new n_scores)."""
    n_dt = dt_hi - dt_lo
    assigned = np.zeros(n_dt, dtype=np.bool_)
    tp, fp, fn = 0, 0, 0
    similarity = 0.0
    for i in range(n_gt):
        gi = gt_lo + i
        if ig_gt[gi] == -1:
            continue
        det = -1
        best_score = -np.inf
        max_overlap = 0.0
        took_ignored = False
        for j in range(n_dt):
            dj = dt_lo + j
            if ig_dt[dj] == -1 or assigned[j] or (compute_fp and score[dj] < thresh):
                continue
            o = ov[base + j * n_gt + i]
            if not o > min_overlap:
                continue
            if not compute_fp:
                if score[dj] > best_score:
                    det, best_score = j, score[dj]
            elif ig_dt[dj] == 0 and (o > max_overlap or took_ignored):
                det, max_overlap, took_ignored = j, o, False
            elif ig_dt[dj] == 1 and det == -1:
                det, took_ignored = j, True
        if det == -1:
            if ig_gt[gi] == 0:
                fn += 1
        elif ig_gt[gi] == 1 or ig_dt[dt_lo + det] == 1:
            assigned[det] = True
        else:
            tp += 1
            tp_scores[n_scores] = score[dt_lo + det]
            n_scores += 1
            similarity += (1.0 + np.cos(gt_alpha[gi] - dt_alpha[dt_lo + det])) / 2.0
            assigned[det] = True
    if compute_fp:
        for j in range(n_dt):
            dj = dt_lo + j
            if not (assigned[j] or ig_dt[dj] != 0 or score[dj] < thresh or in_dc[dj]):
                fp += 1
    return tp, fp, fn, similarity, n_scores


@numba.njit(cache=True)
def _tp_scores(ov, pair_off, gt_off, dt_off, ig_gt, ig_dt, score, gt_alpha, dt_alpha,
               min_overlap):
    """Scores of all TPs over the data set (threshold collection pass, no FP counting)."""
    out = np.empty(len(ig_gt))
    in_dc = np.zeros(len(ig_dt), dtype=np.bool_)
    n = 0
    for f in range(len(gt_off) - 1):
        n_gt = gt_off[f + 1] - gt_off[f]
        _, _, _, _, n = _match_frame(ov, pair_off[f], n_gt, gt_off[f], gt_off[f + 1], dt_off[f],
                                     dt_off[f + 1], ig_gt, ig_dt, score, in_dc, gt_alpha,
                                     dt_alpha, min_overlap, 0.0, False, out, n)
    return out[:n]


@numba.njit(cache=True)
def _pr_counts(ov, pair_off, gt_off, dt_off, ig_gt, ig_dt, score, in_dc, gt_alpha, dt_alpha,
               min_overlap, thresholds):
    """(T, 4) summed tp, fp, fn, orientation similarity at each score threshold."""
    pr = np.zeros((len(thresholds), 4))
    scratch = np.empty(len(ig_gt))
    for f in range(len(gt_off) - 1):
        n_gt = gt_off[f + 1] - gt_off[f]
        if n_gt == 0 and dt_off[f + 1] == dt_off[f]:
            continue
        for t in range(len(thresholds)):
            tp, fp, fn, sim, _ = _match_frame(ov, pair_off[f], n_gt, gt_off[f], gt_off[f + 1],
                                              dt_off[f], dt_off[f + 1], ig_gt, ig_dt, score,
                                              in_dc, gt_alpha, dt_alpha, min_overlap,
                                              thresholds[t], True, scratch, 0)
            pr[t, 0] += tp
            pr[t, 1] += fp
            pr[t, 2] += fn
            pr[t, 3] += sim
    return pr


@numba.njit(cache=True)
def get_thresholds(scores: np.ndarray, num_gt: int,
                   num_sample_pts: int = N_SAMPLE_PTS) -> np.ndarray:
    """The devkit's ``getThresholds``: TP scores (descending) kept where their recall is the best
    approximation of the next of ``num_sample_pts`` linearly spaced recall steps (<= 41 kept)."""
    s = np.sort(scores)[::-1]
    out = np.empty(len(s))
    n = 0
    current_recall = 0.0
    for i in range(len(s)):
        l_recall = (i + 1) / num_gt
        last = i == len(s) - 1
        r_recall = l_recall if last else (i + 2) / num_gt
        if (r_recall - current_recall) < (current_recall - l_recall) and not last:
            continue
        out[n] = s[i]
        n += 1
        current_recall += 1.0 / (num_sample_pts - 1.0)
    return out[:n]


# --------------------------------------------------------------------------------------------
# curves and AP
# --------------------------------------------------------------------------------------------

def _monotone(values: np.ndarray) -> np.ndarray:
    """``v[i] = max(v[i:])`` (the devkit's precision/AOS envelope)."""
    return np.maximum.accumulate(values[::-1])[::-1]


def _class_curves(data: EvalData, cls: str, ig_gt: np.ndarray, ig_dt: np.ndarray, metric: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(41,) precision and (41,) AOS curves of one class / difficulty (given by its ignore flags)
    and metric."""
    min_overlap = MIN_OVERLAP[cls]
    common = (data.overlaps[metric], data.pair_off, data.gt_off, data.dt_off, ig_gt, ig_dt,
              data.dt.score)
    alphas = (data.gt.alpha, data.dt.alpha)
    scores = _tp_scores(*common, *alphas, min_overlap)
    thresholds = get_thresholds(scores, max(int((ig_gt == 0).sum()), 1))
    if len(thresholds) > N_SAMPLE_PTS:  # cannot happen (see get_thresholds); guard the padding
        raise AssertionError(f"{len(thresholds)} thresholds > {N_SAMPLE_PTS}")
    in_dc = (data.dc_overlap > min_overlap) if metric == "bbox" else np.zeros(len(ig_dt), bool)
    pr = _pr_counts(*common, in_dc, *alphas, min_overlap, thresholds)
    precision, aos = np.zeros(N_SAMPLE_PTS), np.zeros(N_SAMPLE_PTS)
    n_det = pr[:, 0] + pr[:, 1]
    ok = n_det > 0  # always true in practice; the devkit would divide by zero (NaN) otherwise
    precision[:len(pr)][ok] = pr[ok, 0] / n_det[ok]
    aos[:len(pr)][ok] = pr[ok, 3] / n_det[ok]
    return _monotone(precision), _monotone(aos)


def precision_curves(gt_annos: list[LabelArrays], dt_annos: list[LabelArrays],
                     classes: tuple[str, ...] = KITTI_CLASSES,
                     data: EvalData | None = None) -> dict[str, np.ndarray]:
    """Monotone precision curves ``{"bbox"|"bev"|"3d"|"aos": (n_classes, 3, 41)}`` at the 41
    devkit sample points (index i ~ recall i/40), difficulties ordered easy, moderate, hard.
    AOS is NaN when any detection lacks an orientation (alpha == -10), as the devkit then skips
    it."""
    for c in classes:
        if c not in MIN_OVERLAP:
            raise ValueError(f"unknown class {c!r}; known: {sorted(MIN_OVERLAP)}")
    data = data or EvalData.build(gt_annos, dt_annos)
    out = {m: np.zeros((len(classes), len(DIFFICULTIES), N_SAMPLE_PTS)) for m in (*METRICS, "aos")}
    for ci, cls in enumerate(classes):
        for d in range(len(DIFFICULTIES)):
            ig_gt, ig_dt = ignore_flags(data.gt, data.dt, cls, d)
            for metric in METRICS:
                precision, aos = _class_curves(data, cls, ig_gt, ig_dt, metric)
                out[metric][ci, d] = precision
                if metric == "bbox":
                    out["aos"][ci, d] = aos
    if np.any(data.dt.alpha == -10):
        out["aos"][:] = np.nan
    return out


def ap_r40(curve: np.ndarray) -> np.ndarray:
    """AP over the 40 recall points 1/40..1 (KITTI since 2019), percent."""
    return curve[..., 1:].sum(-1) / 40 * 100


def ap_r11(curve: np.ndarray) -> np.ndarray:
    """11-point AP (recall 0, 0.1, .., 1), percent."""
    return curve[..., ::4].sum(-1) / 11 * 100


def evaluate(gt_annos: list[LabelArrays], dt_annos: list[LabelArrays],
             classes: tuple[str, ...] = KITTI_CLASSES) -> dict:
    """KITTI AP of detections against ground truth, frame ``i`` of both lists being one image.

    Returns (AP in percent, plain floats)::

        {"Car": {"3d": {"easy": .., "moderate": .., "hard": ..}, "bev": {..}, "bbox": {..},
                 "aos": {..}},          # AP_R40 (40 recall points)
         "Pedestrian": {..}, ...,
         "_R11": {"Car": {...same shape...}, ...}}   # the 11-point AP_R11

    A class without any counted GT at a difficulty scores 0 (as the devkit port does)."""
    curves = precision_curves(gt_annos, dt_annos, classes)

    def table(ap_fn) -> dict:
        return {cls: {m: dict(zip(DIFFICULTIES, map(float, ap_fn(curves[m][ci]))))
                      for m in ("3d", "bev", "bbox", "aos")}
                for ci, cls in enumerate(classes)}

    result = table(ap_r40)
    result["_R11"] = table(ap_r11)
    return result
