"""The benchmarks' teacher, kept in the repository so that a fresh machine need not retrain it.

    .venv/bin/python benchmarks/teacher.py            # train (or resume) and write the fp16 copy

Trains ``voxel_rcnn_fast`` exactly as ``benchmarks/baselines.py`` does (12 epochs, batch 4, AdamW
one-cycle lr 3e-3, seed 0) on the synthetic benchmark (300 train frames, seed 0) into
``benchmarks/runs/teacher`` (resumable), then writes ``benchmarks/checkpoints/teacher_voxel_rcnn_fast.pth``:
the weights in float16 (about 10 MB; BatchNorm statistics and integer buffers keep their dtype) in
a regular clean_deploy checkpoint, plus a JSON sidecar with the training facts and the float16
round-off of every tensor. ``benchmarks/ablation.py`` uses it when ``benchmarks/runs/teacher`` is missing.
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "voxel_rcnn_fast"
CHECKPOINT = ROOT / "benchmarks" / "checkpoints" / f"teacher_{CONFIG}.pth"


def half_copy(src: Path, dst: Path) -> dict:
    """Write ``src``'s weights as float16 into ``dst`` (a clean_deploy checkpoint); returns facts."""
    import torch

    from clean_deploy.models.sparse import describe_backend
    from clean_deploy.models.checkpoint import load_checkpoint, load_detector, save_checkpoint

    model, _ = load_detector(src)
    cfg = model.cfg
    ck = load_checkpoint(src)
    state = model.state_dict()
    worst = 0.0
    for name, t in state.items():
        # float16 keeps 11 bits: running variances and means of BatchNorm stay float32 (cheap, and
        # their round-off would move every folded scale)
        if t.is_floating_point() and "running_" not in name:
            h = t.half()
            worst = max(worst, float((h.float() - t).abs().max()) if t.numel() else 0.0)
            with torch.no_grad():
                t.copy_(h.float())
    meta = {**ck["meta"], "kind": "teacher_fp16", "source": str(src.relative_to(ROOT)) if src.is_relative_to(ROOT)
            else str(src), "fp16_max_abs_roundoff": worst, "written": date.today().isoformat(),
            "trained_with": describe_backend("cpu")}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, model, cfg, meta=meta, half=True)
    dst.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "synth")
    ap.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader workers (0 is fastest on 2 cores: benchmarks/results/train_speed.md)")
    args = ap.parse_args(argv)
    from clean_deploy.config import TrainConfig
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.loop import train

    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from baselines import ensure_data

    ensure_data(args.data, 300, 500, 0)  # the train split is the same for any val size
    run_dir = args.runs / "teacher"
    ckpt = run_dir / "model.pth"
    t0 = time.time()
    if not ckpt.is_file():
        tcfg = TrainConfig(epochs=args.epochs, batch_size=4, lr=0.003, num_workers=args.workers, seed=0)
        train(get_config(CONFIG), args.data, run_dir, tcfg, resume=True, meta={"config_name": CONFIG})
    meta = half_copy(ckpt, CHECKPOINT)
    print(f"teacher: {CHECKPOINT} ({CHECKPOINT.stat().st_size / 1e6:.1f} MB), trained "
          f"{meta.get('train_seconds', 0) / 60:.1f} min, fp16 round-off <= {meta['fp16_max_abs_roundoff']:.2e}; "
          f"this run {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
