"""``clean-deploy data``: generate the synthetic KITTI-format LiDAR benchmark and print dataset
statistics. Thin wrappers over ``clean_deploy.data.synth`` and ``clean_deploy.data.stats``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(help="Datasets: synthesise the KITTI-format LiDAR benchmark, statistics.",
                       no_args_is_help=True)


@data_app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="output root (KITTI layout)")],
    frames: Annotated[int, typer.Option("--frames", min=0, help="training frames")] = 100,
    val_frames: Annotated[int, typer.Option("--val-frames", min=0, help="validation frames")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="dataset seed")] = 0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="worker processes")] = 2,
    azimuth_res: Annotated[float, typer.Option(
        "--azimuth-res", min=0.01, max=2.0, help="LiDAR azimuth step in degrees")] = 0.2,
) -> None:
    """Write a synthetic KITTI-format LiDAR benchmark (velodyne, label_2, calib, ImageSets)."""
    from clean_deploy.data.synth import generate_dataset

    meta = generate_dataset(out, frames, val_frames, seed=seed, workers=workers,
                            azimuth_res=azimuth_res)
    s = meta["summary"]
    typer.echo(f"wrote {frames + val_frames} frames to {out} "
               f"({s['points_per_frame_mean']:.0f} points/frame); labels: {s['label_counts']}")


@data_app.command("stats")
def stats_command(
    root: Annotated[Path, typer.Argument(help="KITTI-format dataset root")],
    json_out: Annotated[Optional[Path], typer.Option(
        "--json", help="also write the statistics as JSON")] = None,
) -> None:
    """Print class counts, points per frame / per object vs distance, occlusion and difficulty."""
    from clean_deploy.data.stats import dataset_stats, format_stats

    st = dataset_stats(root)
    typer.echo(format_stats(st))
    if json_out is not None:
        json_out.write_text(json.dumps(st, indent=2) + "\n")
