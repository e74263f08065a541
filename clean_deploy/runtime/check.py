"""Parity of an exported model with its PyTorch original: the same frames through both, box sets
compared one to one (after the redundancy elimination; matched as sets, since boxes whose scores
agree to float precision may come out in either order) and the KITTI AP of both prediction sets."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from clean_deploy.data.kitti.reader import KittiReader
from clean_deploy.data.kitti.results import detections_to_kitti, write_kitti_results
from clean_deploy.models.detector import Detector
from clean_deploy.runtime.ort_session import OrtSession
from clean_deploy.runtime.torch_session import TorchSession


@dataclass
class ParityReport:
    frames: int = 0
    boxes: int = 0
    frames_with_same_count: int = 0
    max_box_diff: float = 0.0
    max_score_diff: float = 0.0
    label_mismatches: int = 0
    #: matched pairs that differ but whose boxes share their score with another box (to float
    #: precision): which of two tied boxes survives a cap or an NMS step is not defined
    tied_swaps: int = 0
    ap_torch: dict = field(default_factory=dict)
    ap_onnx: dict = field(default_factory=dict)

    @property
    def identical_sets(self) -> bool:
        return self.frames_with_same_count == self.frames and self.label_mismatches == 0

    def ok(self, tol: float = 1e-3) -> bool:
        return self.identical_sets and self.max_box_diff <= tol and self.max_score_diff <= tol

    def summary(self) -> str:
        text = (f"{self.frames} frames, {self.boxes} boxes: same box count in {self.frames_with_same_count}/"
                f"{self.frames} frames, label mismatches {self.label_mismatches}, max |box diff| "
                f"{self.max_box_diff:.2e}, max |score diff| {self.max_score_diff:.2e}")
        if self.tied_swaps:
            text += (f"; {self.tied_swaps} boxes with tied scores came out differently (ties between equal "
                     "scores are undefined; an untrained head produces many)")
        return text


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % (2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def _tied(scores: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Boxes whose score equals another box's score to ``eps``."""
    if len(scores) < 2:
        return np.zeros(len(scores), dtype=bool)
    order = np.argsort(scores)
    s = scores[order]
    close = np.abs(np.diff(s)) <= eps
    t = np.zeros(len(s), dtype=bool)
    t[1:] |= close
    t[:-1] |= close
    out = np.zeros(len(s), dtype=bool)
    out[order] = t
    return out


def check_parity(model: Detector, onnx_path: str | Path, data_root: str | Path, split: str = "val",
                 max_frames: int | None = None, threads: int | None = None,
                 pred_dirs: tuple[Path, Path] | None = None, tol: float = 1e-3) -> ParityReport:
    """Run ``model`` (PyTorch, CPU) and the exported graph (ONNX Runtime) on the same raw frames."""
    from clean_deploy.train.evaluate import evaluate_predictions

    reader = KittiReader(data_root, split)
    ids = reader.frame_ids[:max_frames] if max_frames else reader.frame_ids
    torch_sess = TorchSession(model, "cpu")
    ort_sess = OrtSession(onnx_path, threads=threads, strict_max_voxels=False)
    rep = ParityReport()
    for fid in ids:
        frame = reader.get_frame(fid)
        with torch.no_grad():
            a = torch_sess(frame.points, frame.calib, frame.image_shape)
        b = ort_sess(frame.points, frame.calib, frame.image_shape)
        rep.frames += 1
        rep.boxes += len(a.boxes)
        if len(a.boxes) == len(b.boxes):
            rep.frames_with_same_count += 1
            if len(a.boxes):
                # compare as sets: boxes of (nearly) equal score may come out in either order
                cost = (np.abs(a.boxes[:, None, :6] - b.boxes[None, :, :6]).max(-1)
                        + _angle_diff(a.boxes[:, None, 6], b.boxes[None, :, 6]))
                ia, ib = linear_sum_assignment(cost)
                diff = np.maximum(np.abs(a.boxes[ia, :6] - b.boxes[ib, :6]).max(1),
                                  _angle_diff(a.boxes[ia, 6], b.boxes[ib, 6]))
                tied = _tied(a.scores)[ia] & _tied(b.scores)[ib] & (diff > tol)
                rep.tied_swaps += int(tied.sum())
                if (~tied).any():
                    rep.max_box_diff = max(rep.max_box_diff, float(diff[~tied].max()))
                rep.max_score_diff = max(rep.max_score_diff, float(np.abs(a.scores[ia] - b.scores[ib]).max()))
                rep.label_mismatches += int(((a.labels[ia] != b.labels[ib]) & ~tied).sum())
        else:
            rep.label_mismatches += abs(len(a.boxes) - len(b.boxes))
        if pred_dirs is not None:
            for d, det in zip(pred_dirs, (a, b)):
                objs = detections_to_kitti(det.boxes, det.scores, det.labels, model.cfg.class_names, frame.calib,
                                           frame.image_shape)
                write_kitti_results(d, fid, objs)
    if pred_dirs is not None and max_frames is None:
        rep.ap_torch = evaluate_predictions(data_root, split, pred_dirs[0], model.cfg.class_names, model.cfg.point_cloud_range)
        rep.ap_onnx = evaluate_predictions(data_root, split, pred_dirs[1], model.cfg.class_names, model.cfg.point_cloud_range)
    return rep


def polygraphy_compare(onnx_path: str | Path, data_root: str | Path, split: str = "val", frames: int = 3,
                       atol: float = 1e-4) -> tuple[bool, str]:
    """Polygraphy's comparator on ONNX Runtime: the exported graph with every graph optimisation
    and 2 threads against no optimisation and 1 thread, on real voxelised frames (raw graph
    outputs, padding included). Guards against ORT fusions changing what the model computes.
    (With TensorRT installed, the same comparator checks an engine: see docs/tensorrt.md.)"""
    import onnxruntime as ort
    from polygraphy.backend.onnxrt import OnnxrtRunner
    from polygraphy.comparator import Comparator, CompareFunc
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.WARNING

    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.runtime.ort_ops import session_options
    from clean_deploy.runtime.preprocess import Preprocessor

    def loader(level, threads):
        def make():
            so = session_options(threads)
            so.graph_optimization_level = level
            return ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
        return make

    pre = Preprocessor.from_sidecar(read_sidecar(Path(onnx_path).with_suffix(".json")), strict_max_voxels=False)
    reader = KittiReader(data_root, split)
    feeds = []
    for fid in reader.frame_ids[:frames]:
        b = pre(reader.read_points(fid), reader.read_calib(fid))
        feeds.append({"voxels": b["voxels"].numpy(), "voxel_num_points": b["voxel_num_points"].numpy(),
                      "voxel_coords": b["voxel_coords"].numpy()})
    runners = [OnnxrtRunner(loader(ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 2), name="ort-optimised"),
               OnnxrtRunner(loader(ort.GraphOptimizationLevel.ORT_DISABLE_ALL, 1), name="ort-plain")]
    results = Comparator.run(runners, data_loader=feeds)
    ok = bool(Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=atol, rtol=1e-4)))
    return ok, f"polygraphy ORT (all optimisations, 2 threads) vs (none, 1 thread) on {len(feeds)} frames: " + \
        ("PASSED" if ok else "FAILED") + f" (atol {atol})"
