"""Latency of an inference session over the same frames: warm-up, then per-stage percentiles
(pre-processing / network / post-processing) and throughput (memory: :mod:`clean_deploy.bench.memory`)."""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm


def percentiles(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99))}


def benchmark_session(session: Callable, frames: Sequence[tuple], warmup: int = 3, desc: str = "bench",
                      progress: bool = True) -> dict:
    """Run ``session(points, calib)`` on every frame after ``warmup`` untimed calls.

    ``frames`` holds (points, calib) pairs; the session returns an object with ``timings_ms``
    (dict of stage -> ms; CUDA sessions synchronise before timing). Returns per-stage percentiles
    and frames/s.
    """
    for points, calib in list(frames)[:warmup]:
        session(points, calib)
    stages: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for points, calib in tqdm(frames, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        res = session(points, calib)
        for k, v in res.timings_ms.items():
            stages.setdefault(k, []).append(v)
    wall = time.perf_counter() - t0
    return {"frames": len(frames), "warmup": warmup, "stages_ms": {k: percentiles(v) for k, v in stages.items()},
            "throughput_fps": len(frames) / wall}
