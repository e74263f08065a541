"""``clean-deploy``: the command-line entry point; sub-commands are thin wrappers over the library."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clean_deploy.cli.compress import compress_command, distill_command, prune_command
from clean_deploy.cli.data import data_app
from clean_deploy.cli.eval import eval_command
from clean_deploy.cli.export import export_command
from clean_deploy.cli.quantize import quantize_command
from clean_deploy.cli.train import test_command, train_command

app = typer.Typer(help="clean_deploy: compress LiDAR 3D detectors (CLEAN) and deploy them.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(data_app, name="data")
app.command("eval")(eval_command)
app.command("train")(train_command)
app.command("test")(test_command)
app.command("distill")(distill_command)
app.command("prune")(prune_command)
app.command("compress")(compress_command)
app.command("export")(export_command)
app.command("quantize")(quantize_command)


@app.command("bench")
def bench_command(
    models: Annotated[list[Path], typer.Option("--models", help="checkpoints (.pth, PyTorch) and exported models (.onnx)")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format root")],
    out: Annotated[Path, typer.Option("--out", help="output directory (bench.json, bench.md, plots)")],
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    split: Annotated[str, typer.Option(help="frames of this split")] = "val",
    frames: Annotated[int, typer.Option(help="timed frames (after warm-up)")] = 30,
    warmup: Annotated[int, typer.Option(help="untimed warm-up frames")] = 3,
    threads: Annotated[int, typer.Option(help="CPU threads for every model")] = 2,
    cpp: Annotated[bool, typer.Option("--cpp", help="also run exported models through the C++ sample "
                                                    "(build/bin/clean_deploy_infer)")] = False,
) -> None:
    """Latency (pre/net/post percentiles), throughput, memory, size, FLOPs and AP per model and backend."""
    from clean_deploy.bench.run import bench

    bench([str(m) for m in models], data, out, device, split, frames, warmup, threads, echo=typer.echo, cpp=cpp)


@app.command("model-info")
def model_info_command(
    config: Annotated[list[str], typer.Option("--config", help="detector config(s) or checkpoint path(s)")],
    data: Annotated[Optional[Path], typer.Option("--data", help="KITTI-format root for real frames")] = None,
    frames: Annotated[int, typer.Option(help="frames to average the FLOPs over")] = 5,
) -> None:
    """Parameters and per-frame FLOPs (MACs from real rulebook pairs) of detector configs."""
    from clean_deploy.bench.model_info import load_frames, model_summary
    from clean_deploy.data.synth import generate_frame
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.models.checkpoint import load_detector

    if data is not None:
        fr = load_frames(data, "val", frames)
    else:  # a few synthetic frames made on the fly
        fr = [(f.points, f.calib) for f in (generate_frame(0, i) for i in range(frames))]
    typer.echo(f"{'config':32s} {'params':>10s} {'weights MB':>10s} {'GMACs':>8s} {'GFLOPs':>8s}  by kind (GMACs)")
    for name in config:
        model = load_detector(name)[0] if Path(name).is_file() else build_detector(get_config(name)).eval()
        s = model_summary(model, fr)
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in s["gmacs_by_kind"].items())
        typer.echo(f"{name:32s} {s['params']:10d} {s['weight_mb']:10.2f} {s['gmacs']:8.2f} {s['gflops']:8.2f}  {kinds}")


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
    out: Annotated[Optional[Path], typer.Option("--out", help="run directory (finished stages are reused)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="tiny data and one epoch per stage (a few minutes; CI)")] = False,
    frames: Annotated[Optional[int], typer.Option(help="synthetic training frames")] = None,
    val_frames: Annotated[Optional[int], typer.Option(help="synthetic validation frames")] = None,
    seed: Annotated[int, typer.Option(help="benchmark seed")] = 0,
) -> None:
    """End-to-end demo on the bundled synthetic benchmark: data, teacher + student, CLEAN, ONNX, bench."""
    from clean_deploy.demo import DemoConfig, run_demo

    cfg = DemoConfig.quick() if quick else DemoConfig()
    changes = {k: v for k, v in dict(out=str(out) if out else None, frames=frames, val_frames=val_frames).items()
               if v is not None}
    run_demo(cfg.replace(seed=seed, **changes), echo=typer.echo)


#: exit codes of ``clean-deploy`` (click's own usage errors exit with 2)
EXIT_MISSING_INPUT = 3   # a file or directory is missing, unreadable, or of the wrong kind
EXIT_BAD_INPUT = 4       # a file, option or data value is invalid (the message names it)
#: environment variable that makes user errors print their traceback too (same as --debug)
DEBUG_ENV = "CLEAN_DEPLOY_DEBUG"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Bad input prints one line naming the file or value and exits with a distinct
    code: OSErrors about files (missing, a directory, no permission) exit 3, ValueErrors (the
    project's LabelError, CheckpointError, CalibError, ExportError, KernelError, JSON errors and the
    plain ValueErrors of input checks) exit 4. ``--debug`` (before any ``--``) or
    ``$CLEAN_DEPLOY_DEBUG=1`` adds the traceback, which is also how to see an internal error that
    surfaces as a ValueError. Other exceptions are bugs: traceback, exit 1."""
    import os
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)  # after "--" everything is an argument
    debug = "--debug" in args[:end] or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args[:end] if a != "--debug"] + args[end:]
    try:
        backend = os.environ.get("CLEAN_DEPLOY_SPARSE_BACKEND")
        if backend:  # fail before any work, not at the first sparse conv
            from clean_deploy.models.sparse import BACKEND_ENV, BACKENDS

            if backend not in BACKENDS:
                raise ValueError(f"${BACKEND_ENV}={backend!r} is not a sparse conv backend; expected one of "
                                 f"{', '.join(BACKENDS)}")
        app(args=args, prog_name="clean-deploy")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        _user_error(e, EXIT_MISSING_INPUT, debug)
    except ValueError as e:  # LabelError, CheckpointError, CalibError, ExportError, KernelError, JSON ...
        _user_error(e, EXIT_BAD_INPUT, debug)


def _user_error(e: BaseException, code: int, debug: bool) -> None:
    import sys
    import traceback

    if debug:
        traceback.print_exception(e)
    msg = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
        msg = f"{msg}: {e.filename}"
    print(f"clean-deploy: error: {msg}" + ("" if debug else f"  (exit {code}; --debug for the traceback)"),
          file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
