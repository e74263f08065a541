"""Per-layer quantisation sensitivity (NVIDIA's PTQ workflow): quantise one layer at a time, the rest
in float32, and measure the AP on a split that the final report never uses (val); layers whose drop
exceeds a threshold are the ones to keep in float32."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from clean_deploy.quantize.calibrate import Ranges
from clean_deploy.quantize.config import QuantizeConfig

LAYER_OPS = ("SparseConvolution", "Conv", "ConvTranspose")


def quantizable_layers(model, cfg: QuantizeConfig | None = None) -> list[str]:
    """Node names of the layers quantisation acts on under ``cfg`` (sparse convs when cfg.sparse,
    Conv / ConvTranspose when cfg.dense), graph order."""
    ops = {"SparseConvolution"} if cfg is None or cfg.sparse else set()
    ops |= {"Conv", "ConvTranspose"} if cfg is None or cfg.dense else set()
    return [n.name for n in model.graph.node if n.op_type in ops]


def sensitivity_profile(onnx_path: str | Path, data_root: str | Path, split: str, frames: int | None,
                        cfg: QuantizeConfig, ranges: Ranges, work_dir: str | Path, threads: int | None = None) -> dict:
    """{"fp32": AP, "int8_all": AP, "layers": [{"layer", "op", "ap", "drop"}]} with AP the mean
    moderate 3D AP on ``frames`` frames of ``split`` and drop = fp32 AP - AP with that layer in int8."""
    import onnx

    from clean_deploy.quantize.evaluate import run_split
    from clean_deploy.quantize.pipeline import quantize_onnx
    from clean_deploy.train.evaluate import mean_moderate_ap

    model = onnx.load(str(onnx_path), load_external_data=False)
    layers = quantizable_layers(model, cfg)
    ops = {n.name: n.op_type for n in model.graph.node}
    work = Path(work_dir)
    _, ap = run_split(onnx_path, data_root, split, frames, threads, desc="fp32")
    base = mean_moderate_ap(ap)
    q = work / "all.onnx"
    quantize_onnx(onnx_path, q, data_root, cfg, threads, ranges=ranges)
    _, ap = run_split(q, data_root, split, frames, threads, desc="int8 all")
    rows = []
    for i, layer in enumerate(tqdm(layers, desc="sensitivity", leave=False)):
        q = work / f"layer{i}.onnx"
        keep = tuple(x for x in layers if x != layer)
        quantize_onnx(onnx_path, q, data_root, replace(cfg, keep_fp32=keep), threads, ranges=ranges)
        _, lap = run_split(q, data_root, split, frames, threads, desc=layer[-30:])
        a = mean_moderate_ap(lap)
        rows.append({"layer": layer, "op": ops[layer], "ap": a, "drop": base - a})
    return {"split": split, "frames": frames, "fp32": base, "int8_all": mean_moderate_ap(ap), "layers": rows}


def auto_keep(profile: dict, threshold: float) -> list[str]:
    """Layers whose AP drop exceeds ``threshold`` (AP points), the most sensitive first."""
    rows = sorted(profile["layers"], key=lambda r: -r["drop"])
    return [r["layer"] for r in rows if r["drop"] > threshold]
