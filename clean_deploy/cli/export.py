"""``clean-deploy export``: ONNX export (+ sidecar) of a student checkpoint, optionally checked
against PyTorch on real frames."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def export_command(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="student checkpoint (pruned or not)")],
    out: Annotated[Path, typer.Option("--out", help="model.onnx to write (sidecar: model.json)")],
    opset: Annotated[int, typer.Option(help="ONNX opset of the standard ops")] = 17,
    precision: Annotated[str, typer.Option(help="fp32, or fp16: float16 tensors from the sparse convs to the head "
                                                "(strongly typed TensorRT; docs/tensorrt.md)")] = "fp32",
    check: Annotated[bool, typer.Option("--check", help="compare with PyTorch on --data frames")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="KITTI-format root for --check")] = None,
    split: Annotated[str, typer.Option(help="split for --check")] = "val",
    frames: Annotated[Optional[int], typer.Option(help="frames for --check (default: the whole split, with AP)")] = None,
    tol: Annotated[float, typer.Option(help="max |difference| of boxes and scores for --check")] = 1e-3,
) -> None:
    """Export to ONNX with clean_deploy custom ops; --check runs the parity test on ONNX Runtime."""
    from clean_deploy.export.onnx_export import export_onnx
    from clean_deploy.models.checkpoint import load_detector

    model, _ = load_detector(ckpt)
    res = export_onnx(model, out, opset, source=ckpt, precision=precision)
    typer.echo(f"wrote {res.onnx_path} ({res.onnx_path.stat().st_size / 2 ** 20:.1f} MB, "
               f"{res.num_sparse_nodes} SparseConvolution nodes) and {res.sidecar_path}")
    if check:
        if data is None:
            raise typer.BadParameter("--check needs --data")
        from clean_deploy.eval.files import format_table
        from clean_deploy.runtime.check import check_parity
        from clean_deploy.train.evaluate import mean_moderate_ap

        dirs = (out.parent / f"{out.stem}_pred_torch", out.parent / f"{out.stem}_pred_onnx")
        rep = check_parity(model, res.onnx_path, data, split, frames, pred_dirs=dirs)
        typer.echo("parity: " + rep.summary())
        if rep.ap_torch:
            typer.echo(f"mean moderate 3D AP: PyTorch {mean_moderate_ap(rep.ap_torch):.2f}, "
                       f"ONNX Runtime {mean_moderate_ap(rep.ap_onnx):.2f}")
            typer.echo(format_table(rep.ap_onnx))
        if precision == "fp16":
            # float16 storage changes scores in the 4th digit: boxes near a threshold may come or go,
            # so the sets are not identical; the criterion is the AP (fixed before measuring: 0.5)
            if not rep.ap_torch:
                raise typer.BadParameter("--precision fp16 --check compares APs: leave out --frames")
            diff = mean_moderate_ap(rep.ap_onnx) - mean_moderate_ap(rep.ap_torch)
            if abs(diff) > 0.5:
                typer.echo(f"PARITY FAILED: float16 AP differs from PyTorch float32 by {diff:+.2f} (> 0.5)", err=True)
                raise typer.Exit(1)
            typer.echo(f"parity OK (float16: AP {diff:+.2f} vs PyTorch float32, tolerance 0.5)")
            return
        from clean_deploy.runtime.check import polygraphy_compare

        poly_ok, poly_msg = polygraphy_compare(res.onnx_path, data, split)
        typer.echo(poly_msg)
        if not rep.ok(tol) or not poly_ok:
            typer.echo(f"PARITY FAILED (tolerance {tol})", err=True)
            raise typer.Exit(1)
        typer.echo("parity OK")
