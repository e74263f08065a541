"""Checkpoints: written atomically (temp file + rename), loaded with ``weights_only=True``; the
detector config and run metadata travel inside as JSON strings, never as pickled objects."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from clean_deploy.atomic import atomic_write
from clean_deploy.models.config import DetectorConfig

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a clean_deploy checkpoint (or is damaged)."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Save to a temp file in the same folder, fsync, then rename over ``path``: a crash never
    leaves a half-written checkpoint behind."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: DetectorConfig, *,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    state: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                    half: bool = False) -> None:
    """Write a checkpoint. ``state`` holds resumable loop state (epoch, step, RNG tensors),
    ``meta`` free-form JSON-able metadata (training data, metrics, provenance). ``half``: floating
    weights stored as float16 (BatchNorm running statistics stay float32); loading casts them back."""
    model = model.module if hasattr(model, "module") else model
    weights = model.state_dict()
    if half:
        weights = {k: (v.half() if v.is_floating_point() and "running_" not in k else v) for k, v in weights.items()}
    obj: dict[str, Any] = {
        "format": "clean_deploy.checkpoint",
        "version": FORMAT_VERSION,
        "config_json": cfg.to_json(indent=None),
        "meta_json": json.dumps(meta or {}),
        "model": weights,
    }
    if optimizer is not None:
        obj["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        obj["scheduler"] = scheduler.state_dict()
    if state is not None:
        obj["state"] = state
    atomic_torch_save(obj, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; returns its dict with ``config`` (DetectorConfig) and ``meta``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"{path}: cannot be loaded as a clean_deploy checkpoint ({e})") from None
    if not isinstance(obj, dict) or obj.get("format") != "clean_deploy.checkpoint":
        raise CheckpointError(f"{path}: not a clean_deploy checkpoint (no 'format' marker)")
    try:
        obj["config"] = DetectorConfig.from_dict(_migrate(json.loads(obj["config_json"])))
        obj["meta"] = json.loads(obj.get("meta_json", "{}"))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config/meta inside the checkpoint ({e})") from None
    return obj


#: config keys of earlier development versions that are dropped on load (section path, key)
_OBSOLETE_KEYS = ((("post",), "iou_rescore_beta"),)


def _migrate(cfg: dict) -> dict:
    """Drop keys that earlier versions wrote and that now live elsewhere (e.g. the per-class
    rescoring exponents moved into ``post.redundancy``)."""
    for path, key in _OBSOLETE_KEYS:
        d = cfg
        for p in path:
            d = d.get(p) or {}
        d.pop(key, None)
    return cfg


def load_detector(path: str | Path, map_location: str | torch.device = "cpu"):
    """Build the detector stored in a checkpoint (with its own, possibly pruned, widths), in eval
    mode."""
    from clean_deploy.models.detector import build_detector

    ck = load_checkpoint(path, map_location)
    bad = [k for k, v in ck["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # a diverged run's weights would evaluate to AP 0 without a word
        raise CheckpointError(f"{path}: {len(bad)} weight tensors hold NaN or infinite values (first: {bad[0]}); "
                              "the run that wrote it diverged")
    model = build_detector(ck["config"])
    own = model.state_dict()
    shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in ck["model"].items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if shapes:  # torch would raise with one line per tensor
        k, got, want = shapes[0]
        raise CheckpointError(f"{path}: weights do not fit the stored config ({ck['config'].name}): {len(shapes)} "
                              f"tensors have another shape (first: {k} is {list(got)}, the config builds "
                              f"{list(want)}): a checkpoint of another width or a pruned model saved without "
                              "its pruned config")
    missing, unexpected = model.load_state_dict(ck["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the stored config "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval(), ck
