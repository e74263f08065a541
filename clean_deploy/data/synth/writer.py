"""Write the synthetic benchmark in KITTI's on-disk layout, frames in parallel worker processes.
Layout: training/{velodyne,label_2,calib}/NNNNNN.*, ImageSets/{train,val}.txt, synth_meta.json."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import KittiObject
from clean_deploy.data.synth.config import LidarConfig, SynthConfig
from clean_deploy.data.synth.frame import SynthFrame, generate_frame


def frame_id(index: int) -> str:
    return f"{index:06d}"


def format_label_line(obj: KittiObject) -> str:
    """A label_2 line; DontCare regions use KITTI's exact placeholder fields."""
    if obj.type == "DontCare":
        x1, y1, x2, y2 = obj.bbox
        return (f"DontCare -1 -1 -10 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} "
                "-1 -1 -1 -1000 -1000 -1000 -10")
    return obj.to_line()


def write_frame(root: str | Path, frame: SynthFrame) -> dict:
    """Write one frame's .bin/.txt files under ``root/training``; returns its summary."""
    root = Path(root) / "training"
    fid = frame_id(frame.index)
    pts = np.ascontiguousarray(frame.points, dtype=np.float32)
    pts.tofile(root / "velodyne" / f"{fid}.bin")
    (root / "label_2" / f"{fid}.txt").write_text(
        "".join(format_label_line(o) + "\n" for o in frame.labels))
    frame.calib.write(root / "calib" / f"{fid}.txt")
    return {"index": frame.index, "points": int(len(pts)), "scene": frame.scene.kind,
            "labels": dict(Counter(o.type for o in frame.labels))}


def _work(args: tuple[str, int, int, SynthConfig]) -> dict:
    root, seed, index, cfg = args
    return write_frame(root, generate_frame(seed, index, cfg))


def _exit_with_parent(parent: int) -> None:
    """Worker side: end this process once the pool's parent is gone. A killed parent cannot shut
    the pool down, and its spawned workers would otherwise wait on the call queue forever (each
    holds that queue's write end, so its read never sees EOF)."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(threads: int, parent: int) -> None:
    import numba
    _exit_with_parent(parent)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def generate_dataset(out: str | Path, frames: int, val_frames: int = 0, seed: int = 0,
                     workers: int = 2, cfg: SynthConfig | None = None,
                     azimuth_res: float | None = None, progress: bool = True) -> dict:
    """Generate ``frames`` training + ``val_frames`` validation frames into ``out``.

    Frame ids run 000000.. (train first, then val). Output bytes depend only on
    (seed, index, config), not on ``workers``. Returns the metadata written to synth_meta.json.
    """
    cfg = cfg or SynthConfig()
    if azimuth_res is not None:
        cfg = replace(cfg, lidar=replace(cfg.lidar, azimuth_res_deg=float(azimuth_res)))
    if frames < 0 or val_frames < 0 or frames + val_frames == 0:
        raise ValueError("need at least one frame (frames >= 0, val_frames >= 0)")
    out = Path(out)
    for sub in ("velodyne", "label_2", "calib"):
        (out / "training" / sub).mkdir(parents=True, exist_ok=True)
    (out / "ImageSets").mkdir(parents=True, exist_ok=True)
    n = frames + val_frames
    jobs = [(str(out), int(seed), i, cfg) for i in range(n)]
    workers = max(1, min(int(workers), n))
    results: list[dict] = []
    bar = _progress(n, progress)
    if workers == 1:
        for job in jobs:
            results.append(_work(job))
            bar.update(1)
    else:
        threads = max(1, (os.cpu_count() or 2) // workers)
        ctx = mp.get_context("spawn")  # numba's thread pools are not fork-safe
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(threads, os.getpid())) as pool:
            for res in pool.map(_work, jobs, chunksize=1):
                results.append(res)
                bar.update(1)
    bar.close()
    (out / "ImageSets" / "train.txt").write_text(
        "".join(frame_id(i) + "\n" for i in range(frames)))
    (out / "ImageSets" / "val.txt").write_text(
        "".join(frame_id(i) + "\n" for i in range(frames, n)))
    meta = _meta(cfg, seed, frames, val_frames, results)
    (out / "synth_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _meta(cfg: SynthConfig, seed: int, frames: int, val_frames: int, results: list[dict]) -> dict:
    counts: Counter = Counter()
    for r in results:
        counts.update(r["labels"])
    pts = [r["points"] for r in results]
    lid: LidarConfig = cfg.lidar
    return {
        "generator": "clean_deploy.data.synth",
        "config": cfg.to_dict(),
        "seed": int(seed),
        "frames": {"train": frames, "val": val_frames},
        "rays_per_frame": lid.n_rays,
        "summary": {"label_counts": dict(sorted(counts.items())),
                    "points_per_frame_mean": float(np.mean(pts)) if pts else 0.0,
                    "scene_kinds": dict(sorted(Counter(r["scene"] for r in results).items()))},
    }


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc="synth frames", unit="frame")
