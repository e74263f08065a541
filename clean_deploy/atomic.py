"""Atomic file writes: a unique temp file in the target's folder, fsynced, then renamed over the
target. A crash never leaves a half-written file, and concurrent writers of the same path (torchrun
ranks, DataLoader workers) never rename each other's temp file away."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (os.umask would set it,
    racing with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a binary temp file next to ``path`` and rename it to ``path``. The file
    gets the permissions an ordinary write would give it: the replaced file's mode, else 0o666 less
    the umask (mkstemp's temp files are 0o600, which would hide models and sidecars from other users)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
