"""File-level KITTI evaluation: read a split's label_2 files and a directory of KITTI result
files, evaluate them with :mod:`clean_deploy.eval.kitti_protocol`, format the AP table."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import LabelArrays, read_label_file, to_arrays
from clean_deploy.eval.kitti_protocol import DIFFICULTIES, MIN_OVERLAP, evaluate
from clean_deploy.geometry.boxes import boxes_camera_to_lidar
from clean_deploy.geometry.calib import Calibration
from clean_deploy.kitti import KITTI_CLASSES

__all__ = ["read_split_ids", "load_annos", "restrict_to_range", "evaluate_dirs", "format_table"]

_TABLE_METRICS = ("3d", "bev", "bbox", "aos")


def read_split_ids(data_dir: str | Path, split: str) -> list[str]:
    """Frame ids listed in ``data_dir/ImageSets/{split}.txt`` (one per line, blanks skipped)."""
    path = Path(data_dir) / "ImageSets" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    ids, first_line = [], {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fid = line.strip()
        if not fid:
            continue
        if fid in first_line:  # evaluated twice, it would count its objects and detections twice
            raise ValueError(f"{path}:{n}: frame id {fid!r} is listed twice (first on line {first_line[fid]})")
        first_line[fid] = n
        ids.append(fid)
    if not ids:
        raise ValueError(f"split file {path} lists no frames")
    return ids


def load_annos(data_dir: str | Path, split: str, pred_dir: str | Path, allow_missing: bool = False,
               frame_ids: list[str] | None = None,
               eval_range=None) -> tuple[list[str], list[LabelArrays], list[LabelArrays]]:
    """Ids, ground truth (``training/label_2/ID.txt``) and detections (``pred_dir/ID.txt``, score
    as 16th column) of a split (or of its frames ``frame_ids``). Every frame needs its result file (an empty file: no detections):
    a missing one is an error, since counting it as empty silently lowers the AP. With
    ``allow_missing`` missing files are taken as empty, with a warning that counts them; a
    prediction directory holding none of the split's files is an error either way. ``eval_range``: ground
    truth outside that LiDAR x/y range becomes DontCare (:func:`restrict_to_range`)."""
    ids = read_split_ids(data_dir, split)
    if frame_ids is not None:  # a subset of the split (e.g. its first N frames)
        unknown = sorted(set(frame_ids) - set(ids))
        if unknown:
            raise ValueError(f"frame ids {unknown[:5]} are not in split {split!r} of {data_dir}")
        ids = list(frame_ids)
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction directory not found: {pred_dir}")
    pred_files = [pred_dir / f"{i}.txt" for i in ids]
    missing = [p for p in pred_files if not p.is_file()]
    if len(missing) == len(pred_files):
        raise FileNotFoundError(
            f"{pred_dir} holds none of the {len(ids)} result files of split {split!r} "
            f"(expected e.g. {pred_files[0]}): wrong directory or split?")
    if missing and not allow_missing:
        raise FileNotFoundError(
            f"{pred_dir}: {len(missing)} of the {len(ids)} result files of split {split!r} are missing "
            f"(first: {missing[0].name}); write an empty file for a frame without detections, or allow "
            "missing files (--allow-missing) to count them as empty")
    if missing:
        warnings.warn(f"{pred_dir}: {len(missing)} of {len(ids)} result files missing, evaluated as frames "
                      "without detections", stacklevel=2)
    label_dir = Path(data_dir) / "training" / "label_2"
    gt = [to_arrays(read_label_file(label_dir / f"{i}.txt")) for i in ids]
    if eval_range is not None:  # objects outside a LiDAR x/y range: see restrict_to_range
        calib_dir = Path(data_dir) / "training" / "calib"
        gt = [restrict_to_range(g, Calibration.from_file(calib_dir / f"{i}.txt"), eval_range)
              for i, g in zip(ids, gt)]
    dt = [to_arrays(read_label_file(p, require_score=True) if p.is_file() else [])
          for p in pred_files]
    return ids, gt, dt


def restrict_to_range(gt: LabelArrays, calib: Calibration, point_cloud_range) -> LabelArrays:
    """Ground truth whose LiDAR box centre lies outside ``point_cloud_range`` (x/y) becomes
    DontCare: detections there are ignored and missing them is not a miss."""
    if len(gt) == 0:
        return gt
    boxes = boxes_camera_to_lidar(gt.boxes_camera, calib)
    x0, y0, _, x1, y1, _ = point_cloud_range
    outside = ~((boxes[:, 0] >= x0) & (boxes[:, 0] < x1) & (boxes[:, 1] >= y0) & (boxes[:, 1] < y1))
    outside &= gt.name != "DontCare"
    if not outside.any():
        return gt
    name = gt.name.astype(object).copy()
    name[outside] = "DontCare"
    out = gt.subset(np.ones(len(gt), dtype=bool))
    out.name = name.astype(str)
    return out


def evaluate_dirs(data_dir: str | Path, split: str, pred_dir: str | Path,
                  classes: tuple[str, ...] = KITTI_CLASSES, allow_missing: bool = False) -> dict:
    """KITTI AP of the result files in ``pred_dir`` on ``split`` of the data set at ``data_dir``
    (same dict as :func:`clean_deploy.eval.kitti_protocol.evaluate`; ``allow_missing``: see
    :func:`load_annos`)."""
    _, gt, dt = load_annos(data_dir, split, pred_dir, allow_missing)
    return evaluate(gt, dt, classes)


def _cells(values: dict[str, float]) -> str:
    cells = (values[d] for d in DIFFICULTIES)
    return " ".join("      n/a" if v != v else f"{v:9.2f}" for v in cells)  # v != v: NaN


def format_table(result: dict) -> str:
    """Human-readable table: one block per class, rows 3d/bev/bbox/aos, columns easy/moderate/hard
    for AP_R40 and, if present, AP_R11 (percent)."""
    r11 = result.get("_R11", {})
    classes = [c for c in result if not c.startswith("_")]
    diff_hdr = " ".join(f"{d:>9}" for d in DIFFICULTIES)
    header = f"{'class':<22}{'metric':<7}| {'AP_R40 (%)':^29}"
    sub = f"{'':<22}{'':<7}| {diff_hdr}"
    if r11:
        header += f" | {'AP_R11 (%)':^29}"
        sub += f" | {diff_hdr}"
    lines = [header, sub, "-" * len(sub)]
    for cls in classes:
        iou = MIN_OVERLAP.get(cls)
        label = f"{cls} (IoU {iou:.2f})" if iou is not None else cls
        for k, metric in enumerate(_TABLE_METRICS):
            row = f"{label if k == 0 else '':<22}{metric:<7}| "
            row += _cells(result[cls][metric])
            if r11:
                row += " | " + _cells(r11[cls][metric])
            lines.append(row)
        lines.append("-" * len(sub))
    lines.append("aos = average orientation similarity (2D bbox matching); IoU per class for "
                 "bbox, bev and 3d.")
    return "\n".join(lines)
