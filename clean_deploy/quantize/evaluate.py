"""Accuracy of an exported (float32 or int8) model on a split, and the parity of two models' box sets:
boxes matched one to one by BEV IoU within a class (Hungarian), score and position differences of
the matched pairs, and the share of boxes left unmatched."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm


def run_split(onnx_path: str | Path, data_root: str | Path, split: str, frames: int | None = None,
              threads: int | None = None, pred_dir: str | Path | None = None, desc: str = "predict") -> tuple[list, dict]:
    """(detections per frame, KITTI AP dict) of ``onnx_path`` on the first ``frames`` frames of
    ``split`` (all by default; the AP is over those frames)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # torch only voxelises here; the cores go to ONNX Runtime (restored after)
    try:
        return _run_split(onnx_path, data_root, split, frames, threads, pred_dir, desc)
    finally:
        torch.set_num_threads(before)


def _run_split(onnx_path, data_root, split, frames, threads, pred_dir, desc) -> tuple[list, dict]:
    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.data.kitti.results import detections_to_kitti, write_kitti_results
    from clean_deploy.runtime.ort_session import OrtSession
    from clean_deploy.train.evaluate import evaluate_predictions

    sess = OrtSession(onnx_path, threads=threads, strict_max_voxels=False)
    reader = KittiReader(data_root, split)
    ids = reader.frame_ids[:frames] if frames else reader.frame_ids
    dets = []
    with tempfile.TemporaryDirectory(prefix="clean_deploy_eval.") as tmp:
        pred = Path(pred_dir) if pred_dir else Path(tmp)
        for fid in tqdm(ids, desc=desc, leave=False):
            calib, shape = reader.read_calib(fid), reader.read_image_shape(fid)
            d = sess(reader.read_points(fid), calib, shape)
            dets.append(d)
            write_kitti_results(pred, fid, detections_to_kitti(d.boxes, d.scores, d.labels, sess.class_names, calib,
                                                               shape))
        ap = evaluate_predictions(data_root, split, pred, sess.class_names,
                                  sess.sidecar["preprocess"]["point_cloud_range"], frame_ids=ids)
    return dets, ap


def box_parity(ref: list, other: list, iou_threshold: float = 0.5, min_score: float = 0.1) -> dict:
    """Match ``other``'s boxes to ``ref``'s frame by frame (same label, BEV IoU >= threshold, boxes of
    score >= min_score in either set): matched share of each set, score and centre differences."""
    from scipy.optimize import linear_sum_assignment

    from clean_deploy.geometry.iou import iou_bev

    n_ref = n_oth = 0
    ious, dscore, dcenter, dyaw = [], [], [], []
    for a, b in zip(ref, other):
        ka, kb = a.scores >= min_score, b.scores >= min_score
        ba, bb = a.boxes[ka], b.boxes[kb]
        n_ref += len(ba)
        n_oth += len(bb)
        if not len(ba) or not len(bb):
            continue
        iou = np.asarray(iou_bev(ba.astype(np.float64), bb.astype(np.float64)))
        iou = np.where(a.labels[ka][:, None] == b.labels[kb][None, :], iou, 0.0)
        ia, ib = linear_sum_assignment(-iou)
        ok = iou[ia, ib] >= iou_threshold
        ia, ib = ia[ok], ib[ok]
        ious.extend(iou[ia, ib])
        dscore.extend(np.abs(a.scores[ka][ia] - b.scores[kb][ib]))
        dcenter.extend(np.linalg.norm(ba[ia, :3] - bb[ib, :3], axis=1))
        d = np.abs(ba[ia, 6] - bb[ib, 6]) % (2 * np.pi)
        dyaw.extend(np.minimum(d, 2 * np.pi - d))
    m = len(ious)

    def stats(v):
        v = np.asarray(v, np.float64)
        return {"mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
                "max": float(v.max())} if len(v) else None

    return {"iou_threshold": iou_threshold, "min_score": min_score, "frames": len(ref), "boxes_ref": n_ref,
            "boxes_other": n_oth, "matched": m, "matched_share_ref": m / n_ref if n_ref else 1.0,
            "matched_share_other": m / n_oth if n_oth else 1.0, "iou": stats(ious), "abs_score_diff": stats(dscore),
            "center_diff_m": stats(dcenter), "yaw_diff_rad": stats(dyaw)}
