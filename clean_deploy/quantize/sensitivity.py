"""Per-layer quantisation sensitivity (NVIDIA's PTQ workflow): quantise one layer at a time, the rest
in float32, and measure the AP on a split that the final report never uses (val); layers whose drop
exceeds a threshold, and exceeds the noise of its own measurement, are the ones to keep in float32.

The noise: on a few hundred frames the AP moves by tenths of a point when a handful of borderline
detections swap ranks, which one int8 layer easily does. Each drop therefore carries a
delete-a-group jackknife standard error over ``folds`` interleaved groups of the frames (the drop
recomputed with each group left out); ``auto_keep`` keeps a layer only when its drop exceeds both
the threshold and ``z`` standard errors."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

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


def jackknife_se(leave_one_out: list[float] | np.ndarray) -> float:
    """Delete-a-group jackknife standard error of a statistic from its K values with one group of
    the data left out each: ``sqrt((K-1)/K * sum_k (v_k - mean v)^2)``. For the mean of equal
    groups it equals the usual standard error of the group means (std / sqrt(K))."""
    v = np.asarray(leave_one_out, dtype=np.float64)
    k = len(v)
    if k < 2:
        raise ValueError(f"jackknife_se: need >= 2 leave-one-group-out values, got {k}")
    return float(np.sqrt((k - 1) / k * np.sum((v - v.mean()) ** 2)))


def fold_aps(data_root: str | Path, split: str, pred_dir: str | Path, frame_ids: list[str], eval_range,
             classes: tuple[str, ...], folds: int) -> list[float]:
    """Mean moderate 3D AP of the KITTI results in ``pred_dir`` on ``frame_ids`` of ``split``, with
    each of ``folds`` interleaved groups of those frames left out in turn (the inputs of
    :func:`jackknife_se`; two models' lists on the same frames give a paired difference)."""
    from clean_deploy.eval.files import load_annos
    from clean_deploy.eval.kitti_protocol import evaluate
    from clean_deploy.train.evaluate import mean_moderate_ap

    _, gt, dt = load_annos(data_root, split, pred_dir, frame_ids=frame_ids, eval_range=eval_range)
    n = len(gt)
    out = []
    for k in range(folds):
        keep = [i for i in range(n) if i % folds != k]
        out.append(mean_moderate_ap(evaluate([gt[i] for i in keep], [dt[i] for i in keep], classes)))
    return out


def paired_bootstrap(data_root: str | Path, split: str, pred_a: str | Path, pred_b: str | Path,
                     frame_ids: list[str], eval_range, classes: tuple[str, ...], resamples: int,
                     seed: int = 0) -> np.ndarray:
    """Mean moderate 3D AP of ``pred_b`` minus that of ``pred_a`` on ``resamples`` bootstrap
    resamples of ``frame_ids`` (frames drawn with replacement, the same draw for both models: a
    paired difference). Its standard deviation is the difference's bootstrap standard error. The
    KITTI AP is not a smooth function of the frames (ranks and recall thresholds are global), so
    the jackknife over a few groups is a rough estimate of its noise (4 degrees of freedom with 5
    groups); the bootstrap costs ``2 * resamples`` evaluations but does not rely on smoothness."""
    from clean_deploy.eval.files import load_annos
    from clean_deploy.eval.kitti_protocol import evaluate
    from clean_deploy.train.evaluate import mean_moderate_ap

    if resamples < 2:
        raise ValueError(f"paired_bootstrap: need >= 2 resamples, got {resamples}")
    _, gt, da = load_annos(data_root, split, pred_a, frame_ids=frame_ids, eval_range=eval_range)
    _, _, db = load_annos(data_root, split, pred_b, frame_ids=frame_ids, eval_range=eval_range)
    rng = np.random.default_rng(seed)
    out = []
    for _ in tqdm(range(resamples), desc="bootstrap", leave=False):
        idx = rng.integers(0, len(gt), len(gt))
        g = [gt[i] for i in idx]
        out.append(mean_moderate_ap(evaluate(g, [db[i] for i in idx], classes))
                   - mean_moderate_ap(evaluate(g, [da[i] for i in idx], classes)))
    return np.asarray(out)


def sensitivity_profile(onnx_path: str | Path, data_root: str | Path, split: str, frames: int | None,
                        cfg: QuantizeConfig, ranges: Ranges, work_dir: str | Path, threads: int | None = None,
                        folds: int = 5) -> dict:
    """{"fp32": AP, "int8_all": AP, "int8_all_se": SE, "folds": K, "layers": [{"layer", "op", "ap",
    "drop", "drop_se"}]} with AP the mean moderate 3D AP on ``frames`` frames of ``split``, drop =
    fp32 AP - AP with that layer in int8, and ``drop_se`` its jackknife standard error over
    ``folds`` groups of the frames (:func:`jackknife_se`; paired: the same frames for both models).
    ``folds`` < 2: no standard errors (``None``)."""
    import onnx

    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.eval.kitti_protocol import KITTI_CLASSES
    from clean_deploy.quantize.evaluate import run_split
    from clean_deploy.quantize.pipeline import quantize_onnx
    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.train.evaluate import mean_moderate_ap

    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    layers = quantizable_layers(model, cfg)
    ops = {n.name: n.op_type for n in model.graph.node}
    side = read_sidecar(onnx_path.with_suffix(".json"))
    classes = tuple(c for c in side["class_names"] if c in KITTI_CLASSES)
    eval_range = side["preprocess"]["point_cloud_range"]
    work = Path(work_dir)
    all_ids = KittiReader(data_root, split).frame_ids
    ids = all_ids[:frames] if frames else all_ids  # the frames run_split predicts
    if folds >= 2 and len(ids) < 2 * folds:
        raise ValueError(f"sensitivity: {len(ids)} frames of {split!r} are too few for {folds} folds "
                         f"(need >= {2 * folds})")

    def run(path: Path, name: str, desc: str) -> tuple[float, list[float] | None]:
        """AP of one model and, with folds, its leave-one-group-out APs (from the kept predictions)."""
        pred = work / "pred" / name
        pred.mkdir(parents=True, exist_ok=True)
        _, ap = run_split(path, data_root, split, frames, threads, pred_dir=pred, desc=desc)
        if folds < 2:
            return mean_moderate_ap(ap), None
        return mean_moderate_ap(ap), fold_aps(data_root, split, pred, ids, eval_range, classes, folds)

    def se(base_folds, other_folds):
        if base_folds is None:
            return None
        return jackknife_se(np.asarray(base_folds) - np.asarray(other_folds))

    base, base_folds = run(onnx_path, "fp32", "fp32")
    q = work / "all.onnx"
    quantize_onnx(onnx_path, q, data_root, cfg, threads, ranges=ranges)
    all_ap, all_folds = run(q, "int8_all", "int8 all")
    rows = []
    for i, layer in enumerate(tqdm(layers, desc="sensitivity", leave=False)):
        q = work / f"layer{i}.onnx"
        keep = tuple(x for x in layers if x != layer)
        quantize_onnx(onnx_path, q, data_root, replace(cfg, keep_fp32=keep), threads, ranges=ranges)
        a, a_folds = run(q, f"layer{i}", layer[-30:])
        rows.append({"layer": layer, "op": ops[layer], "ap": a, "drop": base - a, "drop_se": se(base_folds, a_folds)})
    return {"split": split, "frames": frames, "folds": folds if folds >= 2 else None, "fp32": base,
            "int8_all": all_ap, "int8_all_se": se(base_folds, all_folds), "layers": rows}


def auto_keep(profile: dict, threshold: float, z: float = 2.0) -> list[str]:
    """Layers whose AP drop exceeds ``threshold`` (AP points) and, where the profile has standard
    errors, ``z`` times its standard error (a drop within the noise keeps nothing), the most
    sensitive first."""
    rows = sorted(profile["layers"], key=lambda r: -r["drop"])
    return [r["layer"] for r in rows
            if r["drop"] > threshold and (r.get("drop_se") is None or r["drop"] > z * r["drop_se"])]
