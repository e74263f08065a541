"""Memory measurements: peak resident-set growth of the process around a block of work (Linux
``VmHWM`` reset through ``/proc/self/clear_refs``), CUDA peak allocation, weight bytes."""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.rss_delta_mb`` (CPU) / ``m.cuda_peak_mb``."""

    device: str = "cpu"
    rss_delta_mb: float = 0.0
    cuda_peak_mb: float = 0.0
    exact: bool = True

    def __enter__(self) -> "PeakMemory":
        self.exact = _reset_peak()
        self._base = _status_kb("VmRSS")
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        self.rss_delta_mb = max(0, _status_kb("VmHWM") - self._base) / 1024.0
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.cuda_peak_mb = (torch.cuda.max_memory_allocated() - self._cuda_base) / 2 ** 20


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def return_freed_memory_to_os(mmap_threshold: int = 64 * 1024) -> bool:
    """Make RSS follow live allocations: glibc serves blocks >= ``mmap_threshold`` with mmap (so
    freeing them unmaps them), trims the heap on free, and gives back what is free now. Without
    this a process that ran a few warm-up frames keeps their activations' pages and the peak
    growth of the timed frames reads ~0. Returns False where glibc is not the allocator."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 0) == 1
        libc.malloc_trim(0)
        return bool(ok)
    except (OSError, AttributeError):
        return False


def measure_run_memory(session, frames, device: str = "cpu") -> dict:
    """Peak memory that running ``session(points, calib)`` over ``frames`` adds on top of the
    loaded model (activations, workspaces, outputs): RSS growth on CPU (after
    :func:`return_freed_memory_to_os`), ``max_memory_allocated`` growth on CUDA. Call it after a
    warm-up so one-time initialisation is not counted."""
    exact = return_freed_memory_to_os() if device == "cpu" else True
    with PeakMemory(device) as mem:
        for points, calib in frames:
            session(points, calib)
    peak = mem.cuda_peak_mb if device.startswith("cuda") else mem.rss_delta_mb
    return {"run_peak_mb": peak, "frames": len(frames), "exact": bool(exact and mem.exact)}


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers (what a deployed engine must hold)."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
