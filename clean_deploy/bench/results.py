"""Typed benchmark results: what a ``clean-deploy bench`` job measures (latency percentiles per
stage, memory, size, compute, accuracy) as dataclasses, and the one renderer of result tables.

The JSON files keep their layout (``BenchResult.to_dict()`` writes what the worker always wrote:
``latency.stages_ms.<stage>.p50`` ...), so results written before these types load with
``BenchResult.from_dict``; every reader goes through the types instead of indexing dicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

@dataclass(frozen=True)
class Percentiles:
    mean: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Percentiles":
        v = np.asarray(values, dtype=np.float64)
        return cls(float(v.mean()), float(np.percentile(v, 50)), float(np.percentile(v, 90)),
                   float(np.percentile(v, 99)))

    @classmethod
    def from_dict(cls, d: dict) -> "Percentiles":
        return cls(float(d["mean"]), float(d["p50"]), float(d["p90"]), float(d["p99"]))

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "p50": self.p50, "p90": self.p90, "p99": self.p99}


@dataclass(frozen=True)
class Latency:
    """Per-stage latency (ms) over ``frames`` timed frames after ``warmup`` untimed ones."""

    frames: int
    warmup: int
    stages_ms: dict[str, Percentiles]
    throughput_fps: float

    def stage(self, name: str = "total") -> Percentiles:
        if name not in self.stages_ms:
            raise KeyError(f"latency has no stage {name!r} (stages: {sorted(self.stages_ms)})")
        return self.stages_ms[name]

    def p50(self, name: str = "total") -> float:
        return self.stage(name).p50

    @classmethod
    def from_dict(cls, d: dict) -> "Latency":
        return cls(int(d["frames"]), int(d["warmup"]), {k: Percentiles.from_dict(v) for k, v in d["stages_ms"].items()},
                   float(d["throughput_fps"]))

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "warmup": self.warmup,
                "stages_ms": {k: v.to_dict() for k, v in self.stages_ms.items()}, "throughput_fps": self.throughput_fps}


@dataclass
class BenchResult:
    """One (model, backend) job of ``clean-deploy bench``. ``peak_memory_mb`` is None where memory
    is not measured (the C++ sample); ``extra`` keeps the job's other fields (model info, AP table)."""

    label: str
    latency: Latency
    mean_moderate_3d: float
    params: int
    gmacs: float
    weight_mb: float
    peak_memory_mb: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchResult":
        rest = {k: v for k, v in d.items()
                if k not in ("label", "latency", "mean_moderate_3d", "params", "gmacs", "weight_mb")}
        mem = (d.get("memory") or {}).get("peak_inference_mb")
        return cls(str(d.get("label", "")), Latency.from_dict(d["latency"]), float(d["mean_moderate_3d"]),
                   int(d["params"]), float(d["gmacs"]), float(d["weight_mb"]), None if mem is None else float(mem), rest)

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "label": self.label, "latency": self.latency.to_dict(),
                "mean_moderate_3d": self.mean_moderate_3d, "params": self.params, "gmacs": self.gmacs,
                "weight_mb": self.weight_mb}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Lines of a markdown table; cells are written with ``str`` (format numbers before)."""
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"every row needs {len(header)} cells: {[len(r) for r in rows]}")
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
