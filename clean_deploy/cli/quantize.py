"""``clean-deploy quantize``: static int8 post-training quantisation of an exported student, with
an optional per-layer sensitivity profile that picks the layers to keep in float32."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clean_deploy.quantize.config import QuantizeConfig

_D = QuantizeConfig()


def quantize_command(
    onnx_path: Annotated[Path, typer.Option("--onnx", help="exported float32 model (sidecar .json next to it)")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format root with the calibration split")],
    out: Annotated[Path, typer.Option("--out", help="int8 model to write (+ .json sidecar, .quant.json report)")],
    calib_frames: Annotated[int, typer.Option(help="calibration frames (first N of --calib-split)")] = _D.calib_frames,
    calib_split: Annotated[str, typer.Option(help="split to calibrate on (never the one you report)")] = _D.calib_split,
    method: Annotated[str, typer.Option(help="activation ranges: minmax | percentile | entropy")] = _D.method,
    percentile: Annotated[float, typer.Option(help="percentile of |x| for --method percentile")] = _D.percentile,
    target: Annotated[str, typer.Option(help="onnxruntime (uint8 dense activations, fastest on x86 ORT) | "
                                             "tensorrt (symmetric int8 everywhere)")] = _D.target,
    keep_fp32: Annotated[Optional[list[str]], typer.Option("--keep-fp32", help="ONNX node name of a layer to leave "
                                                                                "in float32 (repeatable)")] = None,
    kept_weights: Annotated[str, typer.Option(help="storage of the float32 layers' weights: float32 | int8 "
                                                   "(weight-only, per output channel, behind a DequantizeLinear: "
                                                   "the layer computes in float32, the file shrinks)")] = _D.kept_weights,
    auto_keep: Annotated[Optional[float], typer.Option(help="also keep in float32 every layer whose own int8 "
                                                            "quantisation drops the AP on --sensitivity-split by more "
                                                            "than this (AP points); runs the sensitivity profile")] = None,
    keep_noise_z: Annotated[float, typer.Option(help="--auto-keep keeps a layer only if its drop also exceeds this "
                                                    "many standard errors of the drop (jackknife over "
                                                    "--sensitivity-folds groups of the frames)")] = 2.0,
    sensitivity_folds: Annotated[int, typer.Option(help="frame groups of the drops' standard errors (< 2: none, "
                                                        "the threshold alone decides)")] = 5,
    sensitivity_split: Annotated[str, typer.Option(help="split of the sensitivity profile")] = "val",
    sensitivity_frames: Annotated[Optional[int], typer.Option(help="frames of the profile (default: all)")] = None,
    eval_split: Annotated[Optional[str], typer.Option(help="after quantising: AP of both models and their box "
                                                           "parity on this split")] = None,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op threads")] = None,
) -> None:
    """Quantise an exported student to int8 (dense layers: ONNX Runtime QDQ; sparse convs:
    clean_deploy::SparseConvolutionInt8)."""
    import tempfile

    import onnx

    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.quantize.calibrate import collect_ranges
    from clean_deploy.quantize.pipeline import check_layers, quantize_onnx
    from clean_deploy.quantize.sensitivity import auto_keep as pick, sensitivity_profile

    cfg = QuantizeConfig(target=target, method=method, percentile=percentile, calib_frames=calib_frames,
                         calib_split=calib_split, keep_fp32=tuple(keep_fp32 or ()), kept_weights=kept_weights)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"--onnx {onnx_path}: no such file")
    if not data.is_dir():
        raise FileNotFoundError(f"--data {data}: no such directory")
    model = onnx.load(str(onnx_path))
    check_layers(model, cfg.keep_fp32, onnx_path)  # before the calibration, not after it
    ranges = collect_ranges(model, read_sidecar(onnx_path.with_suffix(".json")), data, cfg, threads)
    profile = None
    if auto_keep is not None:
        with tempfile.TemporaryDirectory(prefix="clean_deploy_sens.") as tmp:
            profile = sensitivity_profile(onnx_path, data, sensitivity_split, sensitivity_frames, cfg, ranges, tmp,
                                          threads, folds=sensitivity_folds)

        def pm(se):
            return f" +- {se:.2f}" if se is not None else ""

        for r in profile["layers"]:
            typer.echo(f"  {r['layer']}: AP {r['ap']:.2f} (drop {r['drop']:+.2f}{pm(r['drop_se'])})")
        extra = pick(profile, auto_keep, keep_noise_z)
        rule = f"drop > {auto_keep}" + (f" and > {keep_noise_z} SE" if profile["folds"] else "")
        typer.echo(f"sensitivity on {sensitivity_split}: float32 {profile['fp32']:.2f}, all int8 "
                   f"{profile['int8_all']:.2f}; kept in float32 ({rule}): {extra or 'none'}")
        cfg = QuantizeConfig(**{**cfg.__dict__, "keep_fp32": tuple(dict.fromkeys(cfg.keep_fp32 + tuple(extra)))})
    rep = quantize_onnx(onnx_path, out, data, cfg, threads, ranges=ranges)
    if profile is not None:
        rep["sensitivity"] = profile
        out.with_suffix(".quant.json").write_text(json.dumps(rep, indent=2) + "\n")
    sizes = rep["file_bytes"]
    typer.echo(f"wrote {out} ({sizes['int8'] / 2**20:.2f} MB, float32 {sizes['fp32'] / 2**20:.2f} MB): "
               f"{len(rep['int8_sparse_layers'])} sparse + {len(rep['int8_dense_layers'])} dense layers in int8, "
               f"{len(rep['fp32_layers'])} in float32 (weights {cfg.kept_weights}); calibration {cfg.method} on "
               f"{rep['calibration']['frames']} {cfg.calib_split} frames")
    if eval_split:
        from clean_deploy.quantize.evaluate import box_parity, run_split
        from clean_deploy.train.evaluate import mean_moderate_ap

        d32, a32 = run_split(onnx_path, data, eval_split, None, threads, desc="fp32")
        d8, a8 = run_split(out, data, eval_split, None, threads, desc="int8")
        par = box_parity(d32, d8)
        typer.echo(f"{eval_split}: mean moderate 3D AP float32 {mean_moderate_ap(a32):.2f}, int8 "
                   f"{mean_moderate_ap(a8):.2f}; boxes matched (BEV IoU >= 0.5): {par['matched_share_ref']:.1%} of "
                   f"float32's, median |score diff| {par['abs_score_diff']['median'] if par['matched'] else 0:.4f}")
