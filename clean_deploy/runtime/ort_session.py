"""ONNX Runtime inference session of an exported model with clean_deploy's custom-op library:
raw point cloud in, boxes out, with the same pre-processing as training and per-stage timings."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from clean_deploy.sidecar import check_sidecar_against_graph, read_sidecar
from clean_deploy.geometry.calib import KITTI_IMAGE_SHAPE, Calibration
from clean_deploy.runtime.ort_ops import session_options
from clean_deploy.runtime.preprocess import Preprocessor
from clean_deploy.runtime.torch_session import Detections

_log = logging.getLogger(__name__)


class OrtSession:
    """``session(points, calib=None) -> Detections`` on ONNX Runtime (CPU by default).

    ``sidecar`` defaults to the JSON next to the model. With ``strict_max_voxels`` (default) a
    cloud that would overflow the exported voxel cap is refused instead of silently truncated.
    ``threads``/``memory_arena``/``allow_spinning``: see :func:`~clean_deploy.runtime.ort_ops.session_options`.
    In a process that only deploys, give the cores to ONNX Runtime (``threads``) and run torch, which
    only voxelises here, with ``torch.set_num_threads(1)``: its idle OpenMP workers otherwise spin
    against ORT's pool (the ``clean-deploy bench`` worker does this).
    """

    def __init__(self, onnx_path: str | Path, sidecar: str | Path | None = None, threads: int | None = None,
                 providers: list[str] | None = None, strict_max_voxels: bool = True,
                 memory_arena: bool = True, allow_spinning: bool = False) -> None:
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
        sidecar_path = Path(sidecar or onnx_path.with_suffix(".json"))
        self.sidecar = read_sidecar(sidecar_path)
        import onnx

        try:
            graph = onnx.load(str(onnx_path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and others for a file that is no model
            raise ValueError(f"{onnx_path}: not an ONNX model ({type(e).__name__}: {e})") from None
        check_sidecar_against_graph(self.sidecar, graph, str(sidecar_path))
        self.class_names = self.sidecar["class_names"]
        self.pre = Preprocessor.from_sidecar(self.sidecar, strict_max_voxels)
        self.session = ort.InferenceSession(str(onnx_path), sess_options=session_options(threads, memory_arena, allow_spinning),
                                            providers=providers or ["CPUExecutionProvider"])

    def run_voxels(self, voxels: np.ndarray, num_points: np.ndarray, coords: np.ndarray) -> dict:
        """The raw graph: voxels (V,T,4), num points (V,), coords (V,4) b z y x -> output dict."""
        outs = self.session.run(None, {"voxels": voxels.astype(np.float32, copy=False),
                                       "voxel_num_points": num_points.astype(np.int32, copy=False),
                                       "voxel_coords": coords.astype(np.int32, copy=False)})
        return dict(zip(self.sidecar["output_names"], outs))

    def __call__(self, points: np.ndarray, calib: Calibration | None = None,
                 image_shape: tuple[int, int] = KITTI_IMAGE_SHAPE) -> Detections:
        t0 = time.perf_counter()
        batch = self.pre(points, calib, image_shape)
        t1 = time.perf_counter()
        if len(batch["voxels"]) == 0:  # nothing in range: no objects (the network would only see biases)
            _log.warning("a cloud of %d points has no point inside the model's range %s: no detections",
                         len(points), list(self.pre.point_cloud_range))
            return Detections.empty({"pre": (t1 - t0) * 1e3, "net": 0.0, "post": 0.0, "total": (t1 - t0) * 1e3})
        out = self.run_voxels(batch["voxels"].numpy(), batch["voxel_num_points"].numpy(), batch["voxel_coords"].numpy())
        t2 = time.perf_counter()
        n = int(out["valid_count"][0])
        dets = Detections(out["boxes"][0, :n].copy(), out["scores"][0, :n].copy(), out["labels"][0, :n].astype(np.int64))
        t3 = time.perf_counter()
        dets.timings_ms = {"pre": (t1 - t0) * 1e3, "net": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3,
                           "total": (t3 - t0) * 1e3}
        return dets
