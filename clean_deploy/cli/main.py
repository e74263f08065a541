"""``clean-deploy``: the command-line entry point; sub-commands are thin wrappers over the library."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clean_deploy.cli.data import data_app
from clean_deploy.cli.eval import eval_command
from clean_deploy.cli.train import test_command, train_command

app = typer.Typer(help="clean_deploy: compress LiDAR 3D detectors (CLEAN) and deploy them.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(data_app, name="data")
app.command("eval")(eval_command)
app.command("train")(train_command)
app.command("test")(test_command)


@app.command("viz")
def viz_command(
    data: Annotated[Path, typer.Argument(help="KITTI-format root")],
    frame: Annotated[str, typer.Option("--frame", help="frame id, e.g. 000012")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write")],
    pred: Annotated[Optional[Path], typer.Option("--pred", help="directory of KITTI result files")] = None,
    split: Annotated[str, typer.Option(help="ImageSets split that lists the frame")] = "val",
) -> None:
    """Draw a frame in bird's-eye view with its labels (and detections)."""
    from clean_deploy.viz.bev import viz_frame

    typer.echo(viz_frame(data, frame, out, pred_dir=pred, split=split))


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="run directory (reused: finished stages are skipped)")] = Path("demo_out"),
    frames: Annotated[int, typer.Option(help="synthetic training frames")] = 24,
    val_frames: Annotated[int, typer.Option(help="synthetic validation frames")] = 8,
    seed: Annotated[int, typer.Option(help="benchmark seed")] = 0,
) -> None:
    """End-to-end demo on the bundled synthetic benchmark."""
    from clean_deploy.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=str(out), frames=frames, val_frames=val_frames, seed=seed), echo=typer.echo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
