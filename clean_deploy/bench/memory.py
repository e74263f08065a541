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


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers (what a deployed engine must hold)."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
