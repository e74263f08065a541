"""PyTorch eager inference session: raw point cloud -> boxes, timing the deploy stages
(pre-processing, network, post-processing) the way CUDA-CenterPoint's logs split them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from clean_deploy.geometry.calib import KITTI_IMAGE_SHAPE, Calibration
from clean_deploy.models.detector import Detector
from clean_deploy.models.postprocess import postprocess
from clean_deploy.runtime.preprocess import Preprocessor


@dataclass
class Detections:
    boxes: np.ndarray  # (D,7) LiDAR boxes
    scores: np.ndarray
    labels: np.ndarray  # 0-based class indices
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, timings_ms: dict[str, float] | None = None) -> "Detections":
        return cls(np.zeros((0, 7), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), timings_ms or {})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchSession:
    """``session(points, calib=None) -> Detections`` on CPU or CUDA."""

    def __init__(self, model: Detector, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.pre = Preprocessor(model.cfg)

    @torch.no_grad()
    def __call__(self, points: np.ndarray, calib: Calibration | None = None,
                 image_shape: tuple[int, int] = KITTI_IMAGE_SHAPE) -> Detections:
        t0 = time.perf_counter()
        batch = self.pre(points, calib, image_shape)
        if len(batch["voxels"]) == 0:  # nothing in range: no objects (the network would only see biases)
            return Detections.empty({"pre": (time.perf_counter() - t0) * 1e3, "net": 0.0, "post": 0.0,
                                     "total": (time.perf_counter() - t0) * 1e3})
        batch = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        _sync(self.device)
        t1 = time.perf_counter()
        out = self.model(batch)
        decoded = self.model.decode(out)
        _sync(self.device)
        t2 = time.perf_counter()
        res = postprocess(decoded, self.model.cfg.post)[0]
        dets = Detections(res["boxes"].cpu().numpy(), res["scores"].cpu().numpy(), res["labels"].cpu().numpy())
        t3 = time.perf_counter()
        dets.timings_ms = {"pre": (t1 - t0) * 1e3, "net": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3,
                           "total": (t3 - t0) * 1e3}
        return dets
