"""The rules of a training run directory for the command line (library callers pass ``resume``
themselves): a directory that already holds a run's products is refused unless the user says
``--resume`` (continue it: its checkpoint must exist) or ``--overwrite`` (its products are removed
first); temp files of writes a kill interrupted are removed when a run starts."""
from __future__ import annotations

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
    """Apply the CLI's rules to ``run_dir``; raises ValueError (user error) with the fix in the message."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a directory (--out must be a run directory)")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    ckpt = run_dir / "checkpoints" / "latest.pth"
    if resume:
        if not ckpt.is_file():
            raise ValueError(f"{run_dir}: --resume but there is no checkpoint {ckpt}; start the run without --resume")
        return run_dir
    found = products(run_dir) if run_dir.is_dir() else []
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise ValueError(f"{run_dir}: holds another run ({names}); pass --resume to continue it or --overwrite "
                         "to replace it, or choose another --out")
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return run_dir


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Temp files of :func:`clean_deploy.atomic.atomic_write` (``<name>.<random>.tmp``) left by a
    killed run in the run directory and its checkpoint folder."""
    run_dir = Path(run_dir)
    stale = [p for d in (run_dir, run_dir / "checkpoints") if d.is_dir() for p in d.glob("*.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
