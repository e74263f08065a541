"""Does the int8 recipe hold beyond one model? The recipe that `benchmarks/int8.py` chose on val for
the deployed CLEAN student (min-max calibration on the first --calib-frames train frames, every
layer int8: its noise-aware sensitivity rule kept none) applied unchanged to other trained students
(e.g. the ablation's `clean_0.5x_ft12` seeds), each scored on the held-out test split in float32
and int8 from the same frames. Nothing here is chosen: the recipe is fixed beforehand.

    .venv/bin/python benchmarks/int8_seeds.py --models A.pth B.pth C.pth --data D --test-data T

Per model: test mean moderate 3D AP in both precisions and the paired difference with its
jackknife SE (--folds interleaved groups of the test frames) and, with --bootstrap N, its paired
bootstrap SE (N resamples of the frames; the jackknife over 5 groups has 4 degrees of freedom and
the AP is not smooth in the frames); over the models: the mean difference with its standard error
(std / sqrt(n)). Writes <out>/int8_seeds.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from baselines import ensure_data  # noqa: E402

from clean_deploy.atomic import atomic_write  # noqa: E402
from clean_deploy.bench.results import markdown_table  # noqa: E402


def one_model(ckpt: Path, args, work: Path) -> dict:
    import numpy as np
    import onnx

    from clean_deploy.data.kitti.reader import KittiReader
    from clean_deploy.eval.kitti_protocol import KITTI_CLASSES
    from clean_deploy.export.onnx_export import export_onnx
    from clean_deploy.models.checkpoint import load_detector
    from clean_deploy.quantize.calibrate import collect_ranges
    from clean_deploy.quantize.config import QuantizeConfig
    from clean_deploy.quantize.evaluate import box_parity, run_split
    from clean_deploy.quantize.pipeline import quantize_onnx
    from clean_deploy.quantize.sensitivity import fold_aps, jackknife_se, paired_bootstrap
    from clean_deploy.sidecar import read_sidecar
    from clean_deploy.train.evaluate import mean_moderate_ap

    det, _ = load_detector(ckpt)
    src = work / "fp32.onnx"
    export_onnx(det, src, source=ckpt)
    side = read_sidecar(src.with_suffix(".json"))
    cfg = QuantizeConfig(method="minmax", calib_frames=args.calib_frames)
    q = work / "int8.onnx"
    ranges = collect_ranges(onnx.load(str(src)), side, args.data, cfg, args.threads)
    quantize_onnx(src, q, args.data, cfg, args.threads, ranges=ranges)
    ids = KittiReader(args.test_data, "val").frame_ids
    classes = tuple(c for c in side["class_names"] if c in KITTI_CLASSES)
    out, dets, folds = {}, {}, {}
    for name, path in (("fp32", src), ("int8", q)):
        pred = work / f"pred_{name}"
        pred.mkdir()
        dets[name], ap = run_split(path, args.test_data, "val", None, args.threads, pred_dir=pred,
                                   desc=f"{ckpt.parent.name} {name}")
        out[name] = {"mean_moderate_3d": mean_moderate_ap(ap),
                     **{c: ap[c]["3d"]["moderate"] for c in classes if c in ap}}
        folds[name] = fold_aps(args.test_data, "val", pred, ids, side["preprocess"]["point_cloud_range"], classes,
                               args.folds)
    out["diff"] = out["int8"]["mean_moderate_3d"] - out["fp32"]["mean_moderate_3d"]
    out["diff_se"] = jackknife_se(np.subtract(folds["int8"], folds["fp32"]))
    if args.bootstrap:
        boot = paired_bootstrap(args.test_data, "val", work / "pred_fp32", work / "pred_int8", ids,
                                side["preprocess"]["point_cloud_range"], classes, args.bootstrap, seed=0)
        out["diff_boot_se"], out["bootstrap"] = float(np.std(boot, ddof=1)), args.bootstrap
    out["parity"] = box_parity(dets["fp32"], dets["int8"], 0.5, 0.3)
    out["checkpoint"] = str(ckpt)
    return out


def markdown(doc: dict) -> str:
    p = doc["protocol"]
    lines = [f"# INT8 recipe across trained students ({doc['date']})", "",
             f"Recipe fixed beforehand (what `benchmarks/int8.py` chose on val for the deployed student): min-max "
             f"calibration on the first {p['calib_frames']} train frames, every layer int8 (ONNX Runtime target). "
             f"Test: {doc['test_frames']} frames of data seed {p['test_seed']}; difference int8 - float32 paired on "
             f"the same frames, SE by jackknife over {p['folds']} groups of them.", ""]
    rows = []
    boot = [r["bootstrap"] for r in doc["models"].values() if r.get("bootstrap")]
    for name, r in doc["models"].items():
        rows.append([name, f"{r['fp32']['mean_moderate_3d']:.2f}", f"{r['int8']['mean_moderate_3d']:.2f}",
                     f"{r['diff']:+.2f} +- {r['diff_se']:.2f}"]
                    + ([f"{r['diff_boot_se']:.2f}" if r.get("bootstrap") else "-"] if boot else [])
                    + [f"{r['parity']['matched_share_ref']:.1%}"])
    lines += markdown_table(["model", "float32 test AP", "int8 test AP", "int8 - float32 (jackknife SE)"]
                            + ([f"paired bootstrap SE ({max(boot)} resamples)"] if boot else [])
                            + ["float32 boxes matched (score >= 0.3, BEV IoU 0.5)"], rows)
    s = doc["summary"]
    if s["n"] >= 2:
        lines += ["", f"Over the {s['n']} models: int8 - float32 = **{s['mean']:+.2f} AP** (SE {s['se']:.2f}, "
                      f"std {s['std']:.2f}); goal: within -1.0 (CUDA-CenterPoint's PTQ drop: 0.5)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, nargs="+", required=True, help="student checkpoints (.pth)")
    ap.add_argument("--names", nargs="+", help="their names in the table (default: the parent folder)")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "synth")
    ap.add_argument("--test-data", type=Path, default=ROOT / "benchmarks" / "data" / "synth_test")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8")
    ap.add_argument("--frames-train", type=int, default=300)
    ap.add_argument("--val-frames-total", type=int, default=500)
    ap.add_argument("--test-frames", type=int, default=500)
    ap.add_argument("--test-seed", type=int, default=1000)
    ap.add_argument("--calib-frames", type=int, default=32)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=0,
                    help="also a paired bootstrap SE of each difference over this many resamples of the test frames")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.bootstrap == 1 or args.bootstrap < 0:
        raise SystemExit(f"--bootstrap: {args.bootstrap} resamples; give 0 (none) or >= 2")
    names = args.names or [m.parent.name for m in args.models]
    if len(names) != len(args.models):
        raise SystemExit(f"--names: {len(names)} names for {len(args.models)} models")
    for m in args.models:
        if not m.is_file():
            raise SystemExit(f"--models: {m}: no such file")
    ensure_data(args.data, args.frames_train, args.val_frames_total, 0)
    ensure_data(args.test_data, 0, args.test_frames, args.test_seed)
    protocol = {"calib_frames": args.calib_frames, "method": "minmax", "keep_fp32": [], "folds": args.folds,
                "test_seed": args.test_seed}
    path = args.out / "int8_seeds.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    if doc.get("protocol") != protocol:
        doc = {"protocol": protocol, "models": {}}
    for name, ckpt in zip(names, args.models):
        done = doc["models"].get(name)
        if done is not None and (not args.bootstrap or done.get("bootstrap") == args.bootstrap):
            continue  # resumable: a model already scored (with the asked-for bootstrap) is kept
        with tempfile.TemporaryDirectory(prefix="clean_deploy_int8_seeds.") as tmp:
            doc["models"][name] = one_model(ckpt, args, Path(tmp))
        print(f"[int8_seeds] {name}: int8 - float32 {doc['models'][name]['diff']:+.2f} "
              f"+- {doc['models'][name]['diff_se']:.2f}", flush=True)
        atomic_write(path, lambda f: f.write((json.dumps(doc, indent=2) + "\n").encode()))
    diffs = [r["diff"] for r in doc["models"].values()]
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    doc.update({"date": str(date.today()), "test_frames": args.test_frames,
                "summary": {"n": len(diffs), "mean": statistics.fmean(diffs), "std": sd,
                            "se": sd / len(diffs) ** 0.5}})
    atomic_write(path, lambda f: f.write((json.dumps(doc, indent=2) + "\n").encode()))
    md = markdown(doc)
    atomic_write(args.out / "int8_seeds.md", lambda f: f.write(md.encode()))
    print(md)


if __name__ == "__main__":
    main()
