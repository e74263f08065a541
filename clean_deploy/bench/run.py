"""``clean-deploy bench``: teacher vs students per backend on the same frames and thread settings.

Each (model, backend) runs in its own subprocess (``python -m clean_deploy.bench.worker``) so
peak-memory deltas do not see each other's allocations, and reports latency percentiles split
into pre-processing / network / post-processing, throughput, peak memory, weight bytes,
parameters, FLOPs and 3D AP. Writes ``bench.json``, ``bench.md`` and two plots.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch
from tqdm import tqdm

from clean_deploy.bench.plots import accuracy_latency_plot, latency_breakdown_plot
from clean_deploy.bench.results import BenchResult, markdown_table


@dataclass
class BenchJob:
    model: str  # checkpoint (.pth) or exported model (.onnx)
    backend: str  # torch | onnxruntime
    device: str = "cpu"

    @property
    def label(self) -> str:
        p = Path(self.model)
        name = p.parent.name if p.stem == "model" else p.stem  # runs/teacher/model.pth -> teacher
        return f"{name} [{self.backend}{'' if self.device == 'cpu' else ' ' + self.device}]"


def backends_for(model: str, device: str, cpp: bool = False) -> list[str]:
    """PyTorch for checkpoints; ONNX Runtime for exported models (and the C++ sample with ``cpp``, CPU only)."""
    if model.endswith(".onnx"):
        return ["onnxruntime"] + (["cpp"] if cpp and device == "cpu" else [])
    return ["torch"]


def cpuinfo_field(name: str) -> str | None:
    """The first ``name`` field of /proc/cpuinfo (``"model name"``, ``"vendor_id"``), None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_description() -> str:
    cpu = cpuinfo_field("model name") or "unknown CPU"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} ({os.cpu_count()} cores){gpu}, {platform.system()} {platform.machine()}, torch {torch.__version__}"


def run_job(job: BenchJob, data: Path, split: str, frames: int, warmup: int, threads: int, out_dir: Path) -> dict:
    out = out_dir / "jobs" / (job.label.replace(" ", "_").replace("[", "").replace("]", "") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if job.backend == "cpp":
        from clean_deploy.bench.cpp_sample import run_cpp_job

        res = run_cpp_job(job.model, data, split, frames, warmup, threads, out.with_suffix(""), job.label)
        out.write_text(json.dumps(res, indent=2) + "\n")
        return res
    cmd = [sys.executable, "-m", "clean_deploy.bench.worker", "--model", job.model, "--backend", job.backend,
           "--device", job.device, "--data", str(data), "--split", split, "--frames", str(frames),
           "--warmup", str(warmup), "--threads", str(threads), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of {job.label} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    res["label"] = job.label
    return res


def run_job_cached(job: BenchJob, data: Path, split: str, frames: int, warmup: int, threads: int, out_dir: Path,
                   cache: Path) -> dict:
    """:func:`run_job`, reusing ``cache`` (the result JSON) while it is newer than the model file."""
    if cache.is_file() and cache.stat().st_mtime >= Path(job.model).stat().st_mtime:
        return json.loads(cache.read_text())
    res = run_job(job, data, split, frames, warmup, threads, out_dir)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res, indent=2) + "\n")
    return res


def bench(models: list[str], data: str | Path, out_dir: str | Path, device: str = "cpu", split: str = "val",
          frames: int = 30, warmup: int = 3, threads: int = 2, echo=print, cpp: bool = False) -> dict:
    """Benchmark every model on every backend available for it; returns the JSON document.

    ``cpp``: exported models also run through the C++ sample (:mod:`clean_deploy.bench.cpp_sample`)."""
    data, out_dir = Path(data), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [BenchJob(m, b, device) for m in models for b in backends_for(m, device, cpp)]
    results = []
    for job in tqdm(jobs, desc="bench", dynamic_ncols=True):
        results.append(run_job(job, data, split, frames, warmup, threads, out_dir))
    doc = {"date": str(date.today()), "machine": machine_description(), "threads": threads, "data": str(data),
           "split": split, "frames": frames, "warmup": warmup, "results": results}
    (out_dir / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = bench_markdown(doc)
    (out_dir / "bench.md").write_text(md)
    typed = [BenchResult.from_dict(r) for r in results]
    rows = [{"label": r.label, "latency_ms": r.latency.p50(), "accuracy": r.mean_moderate_3d, "params_m": r.params / 1e6}
            for r in typed]
    accuracy_latency_plot(rows, out_dir / "accuracy_vs_latency.png", f"accuracy vs latency ({device}, {threads} threads)")
    latency_breakdown_plot([{"label": r.label, "stages": {k: v.p50 for k, v in r.latency.stages_ms.items() if k != "total"}}
                            for r in typed], out_dir / "latency_breakdown.png", "latency per stage (p50)")
    echo(md)
    return doc


def bench_markdown(doc: dict) -> str:
    lines = [f"{doc['date']}, {doc['machine']}; {doc['threads']} threads; {doc['frames']} {doc['split']} frames "
             f"after {doc['warmup']} warm-up.", ""]
    lines[0] += (" Peak mem = weights + the peak growth while running frames (CPU: process RSS with freed pages "
                 "returned to the OS, ONNX Runtime without its arena; CUDA: max_memory_allocated). Activations = "
                 "bytes of all conv/linear layer outputs of a frame (the largest single one in brackets), "
                 "from the PyTorch model (an exported model: its source checkpoint). [cpp]: the C++ sample "
                 "(clean_deploy_infer, pre-processing in C++, ONNX Runtime C++ API); memory not measured there.")
    rows = []
    for r in (BenchResult.from_dict(x) for x in doc["results"]):
        lat = r.latency
        act = (f"{r.extra['activation_mb']:.1f} ({r.extra['max_layer_activation_mb']:.1f})" if r.extra.get("activation_mb")
               else "-")
        rows.append([r.label, f"{r.mean_moderate_3d:.2f}", f"{r.params / 1e6:.3f}", f"{r.gmacs:.2f}", f"{r.weight_mb:.2f}",
                     act, f"{lat.p50():.1f} ({lat.p50('pre'):.1f}/{lat.p50('net'):.1f}/{lat.p50('post'):.1f})",
                     f"{lat.stage().p90:.1f}", f"{lat.stage().p99:.1f}", f"{lat.throughput_fps:.2f}",
                     "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}"])
    lines += markdown_table(["model [backend]", "mean mod 3D AP", "params (M)", "GMACs", "weights (MB)", "activations (MB)",
                             "p50 ms (pre/net/post)", "p90 ms", "p99 ms", "frames/s", "peak mem (MB)"], rows)
    return "\n".join(lines) + "\n"
