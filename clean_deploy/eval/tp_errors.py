"""True-positive box errors: how far the boxes a detector finds are from the objects they found.

KITTI's AP says *whether* a box clears an IoU threshold (0.7 for cars); these errors say *why* one
does not: the centre, the height, the size or the heading. They follow nuScenes' true-positive
metrics (ATE, ASE, AOE), computed in KITTI's camera frame:

- matching: per frame and class, detections in descending score take the nearest unmatched
  ground-truth object whose BEV (camera x/z) centre lies within ``match_dist`` metres (nuScenes:
  2 m); a matched detection is a true positive;
- ``translation``: BEV centre distance (m); ``height``: |difference of the box centres along the
  camera's vertical axis| (m; KITTI's location is the bottom centre, so the centre is location_y - h/2),
  the part of the 3D IoU that BEV hides;
- ``scale``: 1 - IoU of the two boxes' sizes with centres and headings aligned;
- ``orientation``: |heading difference| wrapped to [0, pi] (a box facing backwards is pi off);
  ``orientation_axis``: the same wrapped to [0, pi/2], what the IoU sees (a reversed box overlaps
  fully).

Each error is reported as mean and median over the true positives with score >= ``min_score``;
the orientation also as the fraction of true positives more than :data:`AXIS_OFF` off in axis
(``frac_off``) and the fraction facing backwards (``frac_reversed``, error > pi/2).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import LabelArrays

ERRORS = ("translation", "height", "scale", "orientation", "orientation_axis")
#: an axis error above this (rad) is counted in ``orientation_axis.frac_off``
AXIS_OFF = 0.3


def wrap_angle(d: np.ndarray, period: float = 2 * math.pi) -> np.ndarray:
    """|d| folded into [0, period / 2]."""
    d = np.mod(np.asarray(d, dtype=np.float64), period)
    return np.minimum(d, period - d)


def aligned_size_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes with sizes ``a`` and ``b`` (..., 3) sharing centre and heading."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inter = np.prod(np.minimum(a, b), axis=-1)
    return inter / (np.prod(a, axis=-1) + np.prod(b, axis=-1) - inter)


def match_frame(gt: LabelArrays, dt: LabelArrays, cls: str, match_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one frame's ``cls`` detections (descending score) to its ``cls`` objects.
    Returns index arrays (detection, object) of the matched pairs, in detection-score order."""
    gi = np.flatnonzero(gt.name == cls)
    di = np.flatnonzero(dt.name == cls)
    if len(gi) == 0 or len(di) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    di = di[np.argsort(-dt.score[di], kind="stable")]
    gxz, dxz = gt.location[gi][:, [0, 2]], dt.location[di][:, [0, 2]]
    dist = np.linalg.norm(dxz[:, None, :] - gxz[None, :, :], axis=-1)  # (D, G)
    dist[dist > match_dist] = np.inf
    taken = np.zeros(len(gi), dtype=bool)
    pairs_d, pairs_g = [], []
    for k in range(len(di)):
        row = np.where(taken, np.inf, dist[k])
        j = int(np.argmin(row))
        if np.isfinite(row[j]):
            taken[j] = True
            pairs_d.append(di[k])
            pairs_g.append(gi[j])
    return np.asarray(pairs_d, dtype=np.int64), np.asarray(pairs_g, dtype=np.int64)


def pair_errors(gt: LabelArrays, dt: LabelArrays, d: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
    """Per matched pair (detection index ``d``, object index ``g``): the errors of :data:`ERRORS`."""
    dl, gl = dt.location[d], gt.location[g]
    dry = dt.rotation_y[d] - gt.rotation_y[g]
    return {"translation": np.linalg.norm(dl[:, [0, 2]] - gl[:, [0, 2]], axis=-1),
            "height": np.abs((dl[:, 1] - dt.dimensions[d, 0] / 2) - (gl[:, 1] - gt.dimensions[g, 0] / 2)),
            "scale": 1.0 - aligned_size_iou(dt.dimensions[d], gt.dimensions[g]),
            "orientation": wrap_angle(dry),
            "orientation_axis": wrap_angle(dry, math.pi)}


def tp_errors(gt: list[LabelArrays], dt: list[LabelArrays], classes, match_dist: float = 2.0,
              min_score: float = 0.0) -> dict:
    """``{class: {"objects", "true_positives", "recall", <error>: {"mean", "median"}}}`` over the
    frames (``gt[i]`` and ``dt[i]`` are one frame). Ground truth named otherwise (DontCare, Van)
    is never matched; errors are NaN for a class without true positives."""
    if len(gt) != len(dt):
        raise ValueError(f"{len(gt)} ground-truth frames but {len(dt)} detection frames")
    out = {}
    for cls in classes:
        errs: dict[str, list[np.ndarray]] = {k: [] for k in ERRORS}
        n_obj = n_tp = 0
        for g, d in zip(gt, dt):
            n_obj += int((g.name == cls).sum())
            if min_score > 0:
                d = d.subset(d.score >= min_score)
            di, gi = match_frame(g, d, cls, match_dist)
            n_tp += len(di)
            for k, v in pair_errors(g, d, di, gi).items():
                errs[k].append(v)
        res: dict = {"objects": n_obj, "true_positives": n_tp, "recall": n_tp / n_obj if n_obj else float("nan")}
        for k, v in errs.items():
            a = np.concatenate(v) if v else np.zeros(0)
            res[k] = {"mean": float(a.mean()) if len(a) else float("nan"),
                      "median": float(np.median(a)) if len(a) else float("nan")}
            if k == "orientation_axis":
                res[k]["frac_off"] = float((a > AXIS_OFF).mean()) if len(a) else float("nan")
            if k == "orientation":
                res[k]["frac_reversed"] = float((a > math.pi / 2).mean()) if len(a) else float("nan")
        out[cls] = res
    return out


def format_tp_errors(result: dict, match_dist: float = 2.0) -> str:
    """Human-readable table of :func:`tp_errors` (matched within ``match_dist`` m): one row per
    class, medians (means in brackets)."""
    head = f"{'class':<12}{'objects':>8}{'recall':>8}" + "".join(f"{k:>22}" for k in ERRORS)
    lines = [head, "-" * len(head)]
    for cls, r in result.items():
        cells = "".join(f"{r[k]['median']:>12.3f} [{r[k]['mean']:6.3f}]" for k in ERRORS)
        lines.append(f"{cls:<12}{r['objects']:>8}{r['recall']:>8.3f}{cells}")
    for cls, r in result.items():
        if r["true_positives"]:
            lines.append(f"{cls}: {r['orientation_axis']['frac_off']:.1%} of the true positives more than {AXIS_OFF} rad "
                         f"off in axis, {r['orientation']['frac_reversed']:.1%} facing backwards")
    lines.append(f"true-positive errors, median [mean]: translation = BEV centre distance (m), height = vertical "
                 f"centre offset (m), scale = 1 - aligned-size IoU, orientation in rad ([0, pi]; _axis: [0, pi/2]); "
                 f"matched by BEV centre within {match_dist:g} m")
    return "\n".join(lines)


def tp_errors_dirs(data_root: str | Path, split: str, pred_dir: str | Path, classes, eval_range=None,
                   match_dist: float = 2.0, min_score: float = 0.0, allow_missing: bool = False) -> dict:
    """:func:`tp_errors` of the KITTI result files in ``pred_dir`` on ``split`` of ``data_root``;
    ``eval_range``: objects outside this LiDAR x/y range are not counted (as in the AP)."""
    from clean_deploy.eval.files import load_annos

    _, gt, dt = load_annos(data_root, split, pred_dir, allow_missing=allow_missing, eval_range=eval_range)
    return tp_errors(gt, dt, classes, match_dist, min_score)
