"""``clean-deploy eval``: KITTI AP of a directory of result files on a data set split; prints
the table and optionally writes the AP dict as JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clean_deploy.eval.files import evaluate_dirs, format_table


def eval_command(
    data: Annotated[Path, typer.Option(
        "--data", help="KITTI root (ImageSets/, training/label_2/)")],
    split: Annotated[str, typer.Option("--split", help="split name: ImageSets/SPLIT.txt")] = "val",
    pred: Annotated[Path, typer.Option(
        "--pred", help="directory of KITTI result files ID.txt")] = ...,
    json_out: Annotated[Optional[Path], typer.Option(
        "--json", help="write the AP dict (R40, R11 under '_R11'; percent) to this file")] = None,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="evaluate frames without a result file as frames without detections "
                                "(default: a missing file is an error)")] = False,
    tp_errors: Annotated[bool, typer.Option(
        "--tp-errors", help="also the true-positive box errors (centre, height, size, heading of the matched "
                            "boxes; nuScenes-style matching), stored under '_tp_errors' in --json")] = False,
) -> None:
    """Evaluate KITTI result files with the official protocol (3D/BEV/bbox/AOS, R40 and R11)."""
    result = evaluate_dirs(data, split, pred, allow_missing=allow_missing)
    typer.echo(format_table(result))
    if tp_errors:
        from clean_deploy.eval.tp_errors import format_tp_errors, tp_errors_dirs

        classes = [c for c in result if not c.startswith("_")]
        result["_tp_errors"] = tp_errors_dirs(data, split, pred, classes, allow_missing=allow_missing)
        typer.echo(format_tp_errors(result["_tp_errors"], 2.0))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {json_out}")
