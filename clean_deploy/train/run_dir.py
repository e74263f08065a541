"""The rules of a training run directory for the command line (library callers pass ``resume``
themselves): a directory that already holds a run's products is refused unless the user says
``--resume`` (continue it: its checkpoint must exist) or ``--overwrite`` (its products are removed
first); temp files of writes a kill interrupted are removed when a run starts."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

#: what a training run writes into its directory (files and folders)
RUN_PRODUCTS = ("checkpoints", "model.pth", "log.csv", "gt_database.npz")
RUN_PRODUCT_GLOBS = ("eval_*.json", "pred_*")


def products(run_dir: Path) -> list[Path]:
    found = [run_dir / n for n in RUN_PRODUCTS if (run_dir / n).exists()]
    for pattern in RUN_PRODUCT_GLOBS:
        found += sorted(run_dir.glob(pattern))
    return found


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> Path:
    """Apply the CLI's rules to ``run_dir``; raises ValueError (user error) with the fix in the message.
    Under torchrun only rank 0 applies them (the other ranks would see its files)."""
    run_dir = Path(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a directory (--out must be a run directory)")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    ckpt = run_dir / "checkpoints" / "latest.pth"
    if resume:
        if not ckpt.is_file():
            hint = ("start it again with --overwrite (the run stopped before its first checkpoint)"
                    if products(run_dir) else "start the run without --resume")
            raise ValueError(f"{run_dir}: --resume but there is no checkpoint {ckpt}; {hint}")
        return run_dir
    found = products(run_dir) if run_dir.is_dir() else []
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise ValueError(f"{run_dir}: holds another run ({names}); pass --resume to continue it or --overwrite "
                         "to replace it, or choose another --out")
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return run_dir


#: the files a run writes atomically (clean_deploy.atomic.atomic_write: ``<name>.<random>.tmp`` beside them)
ATOMIC_PRODUCTS = ("model.pth", "gt_database.npz", "checkpoints/latest.pth")


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Temp files of the run's own atomic writes left by a killed run (nothing else: ``--out`` may be
    a folder that other programs write temp files into)."""
    run_dir = Path(run_dir)
    stale = []
    for product in ATOMIC_PRODUCTS:
        target = run_dir / product
        if target.parent.is_dir():
            stale += [p for p in target.parent.glob(target.name + ".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
