"""The end-to-end demo behind ``clean-deploy demo`` (the README's main command).

Stages so far: synthesise a small KITTI-format benchmark (reused when it already exists with the
same parameters), print its statistics, evaluate a reference prediction with the KITTI protocol
and draw a BEV plot. Later stages (train, compress, export, benchmark) hang off the same run dir.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from clean_deploy.config import ConfigBase


@dataclass
class DemoConfig(ConfigBase):
    out: str = "demo_out"
    frames: int = 24
    val_frames: int = 8
    seed: int = 0
    azimuth_res: float = 0.2
    workers: int = 2


def _dataset_ready(root: Path, cfg: DemoConfig) -> bool:
    """True when ``root`` holds a finished synthetic benchmark made with the same parameters."""
    meta = root / "synth_meta.json"  # written last by the generator
    if not meta.is_file():
        return False
    m = json.loads(meta.read_text())
    return (m.get("frames") == {"train": cfg.frames, "val": cfg.val_frames} and m.get("seed") == cfg.seed
            and abs(m["config"]["lidar"]["azimuth_res_deg"] - cfg.azimuth_res) < 1e-9)


def run_demo(cfg: DemoConfig, echo=print) -> dict:
    """Run the demo stages into ``cfg.out``; returns a summary dict (also written as JSON)."""
    from clean_deploy.data.stats import dataset_stats, format_stats
    from clean_deploy.data.synth import generate_dataset
    from clean_deploy.eval.files import evaluate_dirs, format_table
    from clean_deploy.eval.reference import write_reference_predictions
    from clean_deploy.viz.bev import viz_frame

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    summary: dict = {"config": cfg.to_dict(), "timings_s": {}}
    t = time.time()
    if _dataset_ready(data, cfg):
        echo(f"[1/4] synthetic benchmark: reusing {data}")
    else:
        echo(f"[1/4] synthesising {cfg.frames}+{cfg.val_frames} frames into {data}")
        generate_dataset(data, cfg.frames, cfg.val_frames, seed=cfg.seed, workers=cfg.workers,
                         azimuth_res=cfg.azimuth_res)
    summary["timings_s"]["synth"] = time.time() - t
    echo("[2/4] dataset statistics")
    echo(format_stats(dataset_stats(data)))
    echo("[3/4] evaluating a reference prediction (GT with jitter, misses and false positives)")
    t = time.time()
    pred = write_reference_predictions(data, "val", out / "reference_pred", seed=cfg.seed)
    result = evaluate_dirs(data, "val", pred)
    summary["timings_s"]["eval"] = time.time() - t
    summary["reference_ap"] = result
    echo(format_table(result))
    echo("[4/4] BEV plot")
    val_ids = (data / "ImageSets" / "val.txt").read_text().split()
    png = viz_frame(data, val_ids[0], out / "bev_val_frame.png", pred_dir=pred, split="val")
    summary["bev_png"] = str(png)
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    echo(f"done: plot {png}, summary {out / 'demo_summary.json'}")
    return summary
