"""The C++ sample (``build/bin/clean_deploy_infer``: KITTI files -> exported model on ONNX Runtime
with our op library, all pre-processing in C++) as a benchmark backend of ``clean-deploy bench``.

Two runs of the binary per model: one over the split's first ``warmup`` frames then its first
``frames`` frames (the same frames and warm-up as the Python backends; only the second group is
timed, from the sample's ``--timing-json``), and one over the whole split whose KITTI result files
give the AP. Latency is pre-processing + network, like the Python sessions (file loading and result
writing are excluded there too, and reported here separately). Memory is not measured for this
backend (the process peak includes the loaded libraries, which the Python rows exclude).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from clean_deploy.bench.results import Latency, Percentiles

SAMPLE_ENV = "CLEAN_DEPLOY_INFER"
BUILD_COMMAND = "bash scripts/build_sample.sh"
_REPO = Path(__file__).resolve().parents[2]


def sample_binary() -> Path:
    """``$CLEAN_DEPLOY_INFER`` or the repo's ``build/bin/clean_deploy_infer``; a clear error if missing."""
    env = os.environ.get(SAMPLE_ENV)
    path = Path(env) if env else _REPO / "build" / "bin" / "clean_deploy_infer"
    if not path.is_file():
        raise FileNotFoundError(f"the C++ sample is not built ({path} does not exist): build it with "
                                f"`{BUILD_COMMAND}` in {_REPO} (part of `make setup`)")
    return path


def _link_frames(reader, ids: list[str], names: list[str], folder: Path) -> tuple[Path, Path]:
    """velodyne/ and calib/ folders of symlinks ``name.bin``/``name.txt`` -> the frames ``ids``."""
    velo, calib = folder / "velodyne", folder / "calib"
    for d in (velo, calib):
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
    for fid, name in zip(ids, names):
        (velo / f"{name}.bin").symlink_to(reader.velodyne_path(fid).resolve())
        (calib / f"{name}.txt").symlink_to(reader.calib_path(fid).resolve())
    return velo, calib


def _run_sample(binary: Path, model: str, velo: Path, calib: Path, out: Path, threads: int, timing: Path | None,
                images: Path | None) -> None:
    from clean_deploy.runtime.ort_ops import library_path

    cmd = [str(binary), "--model", model, "--bin", str(velo), "--calib", str(calib), "--out", str(out),
           "--threads", str(threads), "--custom-ops", str(library_path())]
    if timing is not None:
        cmd += ["--timing-json", str(timing)]
    if images is not None:
        cmd += ["--images", str(images)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def read_timing_json(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON object ({e})") from None
    return rows


def run_cpp_job(model: str, data: str | Path, split: str, frames: int, warmup: int, threads: int,
                work_dir: Path, label: str) -> dict:
    """Benchmark ``model`` (.onnx with its sidecar) through the C++ sample; the result has the schema
    of :mod:`clean_deploy.bench.worker`'s (memory fields None)."""
    from clean_deploy.bench.model_info import exported_model_info, load_frames
    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap

    binary = sample_binary()
    reader = KittiReader(data, split)
    ids = reader.frame_ids
    timed_ids, warm_ids = ids[:frames], ids[: min(warmup, len(ids))]
    images = reader.split_dir / "image_2"
    images = images if images.is_dir() else None
    work_dir.mkdir(parents=True, exist_ok=True)
    # 1. latency: warm-up frames (a*) then the timed ones (b*): the sample runs a folder in sorted order
    names = [f"a{i:06d}" for i in range(len(warm_ids))] + [f"b{i:06d}" for i in range(len(timed_ids))]
    velo, calib = _link_frames(reader, warm_ids + timed_ids, names, work_dir / "timing_frames")
    timing = work_dir / "timing.jsonl"
    _run_sample(binary, model, velo, calib, work_dir / "timing_pred", threads, timing, images)
    rows = [r for r in read_timing_json(timing) if r["id"].startswith("b")]
    if len(rows) != len(timed_ids):
        raise RuntimeError(f"{timing}: {len(rows)} timed frames, expected {len(timed_ids)}")
    pre = np.array([r["pre_ms"] for r in rows])
    net = np.array([r["net_ms"] for r in rows])
    stages = {"pre": pre, "net": net, "post": np.zeros_like(pre), "total": pre + net,
              "load": np.array([r["load_ms"] for r in rows]), "write": np.array([r["write_ms"] for r in rows])}
    latency = Latency(len(rows), len(warm_ids), {k: Percentiles.of(v) for k, v in stages.items()},
                      len(rows) / (float(stages["total"].sum()) / 1e3)).to_dict()
    # 2. accuracy: the whole split under the real frame ids
    velo, calib = _link_frames(reader, ids, ids, work_dir / "split_frames")
    pred = work_dir / "pred"
    _run_sample(binary, model, velo, calib, pred, threads, None, images)
    sidecar = read_sidecar(Path(model).with_suffix(".json"))
    ap = evaluate_predictions(data, split, pred, sidecar["class_names"], sidecar["preprocess"]["point_cloud_range"])
    info = exported_model_info(model, load_frames(data, split, 5))
    return {"model": model, "backend": "cpp", "device": "cpu", "threads": threads, **info, "latency": latency,
            "memory": {"peak_inference_mb": None, "weights_mb": info["weight_mb"], "run_peak_mb": None},
            "ap": ap, "mean_moderate_3d": mean_moderate_ap(ap), "label": label}
