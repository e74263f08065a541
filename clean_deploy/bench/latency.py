"""Latency of an inference session over the same frames: warm-up, then per-stage percentiles
(pre-processing / network / post-processing) and throughput (memory: :mod:`clean_deploy.bench.memory`)."""
from __future__ import annotations

import time
from typing import Callable, Sequence

from tqdm import tqdm

from clean_deploy.bench.results import Latency, Percentiles


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
    return Latency(len(frames), warmup, {k: Percentiles.of(v) for k, v in stages.items()}, len(frames) / wall).to_dict()
