"""Parameters and per-frame compute (MACs from real rulebook pairs) of a detector on real frames."""
from __future__ import annotations

from pathlib import Path
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


def source_model(onnx_path: str | Path) -> Detector | None:
    """The PyTorch checkpoint an exported model came from (its sidecar's ``source_checkpoint``), if
    recorded and still there."""
    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.models.checkpoint import load_detector

    src = read_sidecar(Path(onnx_path).with_suffix(".json")).get("source_checkpoint")
    if src and Path(src).is_file():
        return load_detector(src)[0]
    return None


def exported_model_info(onnx_path: str | Path, frames: Sequence[tuple]) -> dict:
    """:func:`model_summary` of an exported model's source checkpoint (zeros when none is recorded),
    with the weights measured as the ONNX file's size."""
    src = source_model(onnx_path)
    info = model_summary(src, frames) if src is not None else {"params": 0, "gmacs": 0.0, "gflops": 0.0}
    info["weight_mb"] = Path(onnx_path).stat().st_size / 2 ** 20
    return info


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
