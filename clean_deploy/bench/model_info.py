"""Parameters and per-frame compute (MACs from real rulebook pairs) of a detector on real frames."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from clean_deploy.bench.memory import weight_bytes
from clean_deploy.models.detector import Detector
from clean_deploy.models.flops import count_params, profile_compute
from clean_deploy.runtime.preprocess import Preprocessor


def load_frames(data_root, split: str = "val", limit: int | None = None) -> list[tuple]:
    """(points, calib) pairs of a KITTI-format split (raw points, not cropped)."""
    from clean_deploy.data.kitti.reader import KittiReader

    reader = KittiReader(data_root, split)
    ids = reader.frame_ids[:limit] if limit else reader.frame_ids
    return [(reader.read_points(i), reader.read_calib(i)) for i in ids]


@torch.no_grad()
def model_summary(model: Detector, frames: Sequence[tuple]) -> dict:
    """Params, weight bytes and mean MACs per frame (by layer kind) over ``frames``."""
    pre = Preprocessor(model.cfg)
    macs, kinds, act, act_max = [], {}, [], []
    for points, calib in frames:
        prof = profile_compute(model, pre(points, calib))
        macs.append(prof.macs)
        act.append(prof.activation_bytes)
        act_max.append(prof.max_layer_out_bytes)
        for k, v in prof.by_kind().items():
            kinds.setdefault(k, []).append(v)
    return {"name": model.cfg.name, "params": count_params(model), "weight_mb": weight_bytes(model) / 2 ** 20,
            "gmacs": float(np.mean(macs)) / 1e9 if macs else 0.0, "gflops": 2 * float(np.mean(macs)) / 1e9 if macs else 0.0,
            "gmacs_by_kind": {k: float(np.mean(v)) / 1e9 for k, v in kinds.items()},
            # per frame: all compute-layer outputs, and the largest one (see ComputeProfile)
            "activation_mb": float(np.mean(act)) / 2 ** 20 if act else 0.0,
            "max_layer_activation_mb": float(np.mean(act_max)) / 2 ** 20 if act_max else 0.0}
