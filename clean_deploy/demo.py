"""The end-to-end demo behind ``clean-deploy demo`` (the README's main command).

Synthesise a small KITTI-format benchmark, evaluate a reference prediction (the evaluator at
work), train a small two-stage teacher and a one-stage student, run CLEAN (distil, prune,
fine-tune, redundancy elimination), export the compressed student to ONNX with our custom ops,
check ONNX Runtime against PyTorch, benchmark teacher vs student and print the ratios. The data,
training and compression stages reuse what an earlier run with the same settings left in the output
directory, so a re-run resumes; one made with other settings is refused (:mod:`clean_deploy.stages`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from clean_deploy.bench.results import BenchResult, markdown_table
from clean_deploy.config import ConfigBase


@dataclass
class DemoConfig(ConfigBase):
    out: str = "demo_out"
    frames: int = 64
    val_frames: int = 16
    seed: int = 0
    azimuth_res: float = 0.2
    workers: int = 2
    teacher: str = "voxel_rcnn_fast@0.5x"
    student: str = "second_fast@0.5x"
    teacher_epochs: int = 8
    student_epochs: int = 8
    distill_epochs: int = 8
    finetune_epochs: int = 3
    target_flops: float = 0.5
    prune_method: str = "masked"
    bench_frames: int = 16
    stages: list[str] = field(default_factory=lambda: ["data", "reference", "train", "compress", "export", "bench"])

    @classmethod
    def quick(cls, out: str = "demo_out_quick") -> "DemoConfig":
        """A few-minute version for CI: tiny data, one epoch per training stage."""
        return cls(out=out, frames=8, val_frames=4, azimuth_res=0.4, teacher="voxel_rcnn_fast@0.25x",
                   student="second_fast@0.25x", teacher_epochs=1, student_epochs=1, distill_epochs=1,
                   finetune_epochs=1, prune_method="taylor", bench_frames=2)


def _dataset_ready(root: Path, cfg: DemoConfig) -> bool:
    """True when ``root`` holds a finished synthetic benchmark made with the same parameters."""
    meta = root / "synth_meta.json"  # written last by the generator
    if not meta.is_file():
        return False
    m = json.loads(meta.read_text())
    return (m.get("frames") == {"train": cfg.frames, "val": cfg.val_frames} and m.get("seed") == cfg.seed
            and abs(m["config"]["lidar"]["azimuth_res_deg"] - cfg.azimuth_res) < 1e-9)


def _train_once(name: str, epochs: int, data: Path, run: Path, echo) -> Path:
    """Train ``name`` into ``run`` once: a cached stage keyed by the settings and the benchmark's
    ``synth_meta.json`` (a model trained on other data or for other epochs is never reused)."""
    from clean_deploy.config import TrainConfig
    from clean_deploy.models.zoo import get_config
    from clean_deploy.stages import Stage, run_stage
    from clean_deploy.train.loop import train

    ckpt = run / "model.pth"
    tcfg = TrainConfig(epochs=epochs, batch_size=2, lr=0.003, num_workers=2)

    def go():
        train(get_config(name), data, run, tcfg, resume=True, meta={"config_name": name})

    params = dict(config=name, epochs=tcfg.epochs, batch_size=tcfg.batch_size, lr=tcfg.lr, seed=tcfg.seed)
    if not run_stage(Stage(f"train {name}", ckpt, go, params, (data / "synth_meta.json",))):
        echo(f"    reusing {ckpt}")
    return ckpt


def run_demo(cfg: DemoConfig, echo=print) -> dict:
    """Run the demo stages into ``cfg.out``; returns a summary dict (also written as JSON)."""
    from clean_deploy.compress.config import PruneConfig
    from clean_deploy.pipeline import CompressConfig, compress
    from clean_deploy.data.stats import dataset_stats, format_stats
    from clean_deploy.data.synth import generate_dataset
    from clean_deploy.eval.files import evaluate_dirs, format_table
    from clean_deploy.eval.reference import write_reference_predictions
    from clean_deploy.viz.bev import viz_frame

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    summary: dict = {"config": cfg.to_dict(), "timings_s": {}}
    timer = time.time()

    def lap(name: str) -> None:
        nonlocal timer
        summary["timings_s"][name] = round(time.time() - timer, 1)
        timer = time.time()

    # 1. benchmark
    if _dataset_ready(data, cfg):
        echo(f"[data] reusing the synthetic benchmark in {data}")
    else:
        made = sorted(str(p.relative_to(out)) for p in out.rglob("*.stage.json"))
        if (data / "synth_meta.json").is_file() and made:
            # regenerating would replace the data those stages were made from; refuse before touching it
            from clean_deploy.stages import StageMismatch

            raise StageMismatch(f"{data} was synthesised with other settings (frames, seed or azimuth resolution) and "
                                f"{out} holds stages made from it ({', '.join(made[:3])}{', ...' if len(made) > 3 else ''}); "
                                "use a new --out")
        echo(f"[data] synthesising {cfg.frames}+{cfg.val_frames} ray-cast LiDAR frames into {data}")
        generate_dataset(data, cfg.frames, cfg.val_frames, seed=cfg.seed, workers=cfg.workers,
                         azimuth_res=cfg.azimuth_res)
    echo(format_stats(dataset_stats(data)))
    lap("data")
    # 2. the evaluator on a reference prediction, and a BEV plot
    if "reference" in cfg.stages:
        echo("[reference] KITTI evaluation of a reference prediction (GT with jitter, misses, false positives)")
        pred = write_reference_predictions(data, "val", out / "reference_pred", seed=cfg.seed)
        result = evaluate_dirs(data, "val", pred)
        summary["reference_ap"] = result
        echo(format_table(result))
        val_ids = (data / "ImageSets" / "val.txt").read_text().split()
        summary["bev_png"] = str(viz_frame(data, val_ids[0], out / "bev_val_frame.png", pred_dir=pred, split="val"))
        lap("reference")
    if "train" not in cfg.stages:
        return _finish(out, summary, echo)
    # 3. teacher and plain student
    echo(f"[train] two-stage teacher {cfg.teacher} ({cfg.teacher_epochs} epochs)")
    teacher = _train_once(cfg.teacher, cfg.teacher_epochs, data, out / "teacher", echo)
    echo(f"[train] plain one-stage student {cfg.student} ({cfg.student_epochs} epochs)")
    student = _train_once(cfg.student, cfg.student_epochs, data, out / "student_plain", echo)
    lap("train")
    # 4. CLEAN
    if "compress" in cfg.stages:
        echo(f"[compress] CLEAN: distil -> {cfg.prune_method} pruning to {cfg.target_flops:.2f}x FLOPs -> fine-tune -> RE")
        ccfg = CompressConfig(student=cfg.student, distill_epochs=cfg.distill_epochs, finetune_epochs=cfg.finetune_epochs,
                              batch_size=2, latency_frames=cfg.bench_frames,
                              prune=PruneConfig(method=cfg.prune_method, calib_frames=4, calib_batch=2))
        report = compress(teacher, data, out / "clean", ccfg, target_flops=cfg.target_flops, echo=echo)
        summary["compress"] = {"ratios": report["ratios"],
                               "mean_moderate_3d": {k: v["mean_moderate_3d"] for k, v in report["results"].items()}}
        lap("compress")
    compressed = out / "clean" / "compressed.pth"
    # 5. export + parity
    onnx_path = out / "export" / "student.onnx"
    if "export" in cfg.stages:
        from clean_deploy.runtime.check import check_parity
        from clean_deploy.export.onnx_export import export_onnx
        from clean_deploy.models.checkpoint import load_detector

        echo(f"[export] {compressed} -> {onnx_path} (custom ops: SparseConvolution, IoUAwareRedundancyElimination)")
        model, _ = load_detector(compressed)
        export_onnx(model, onnx_path, source=compressed)
        rep = check_parity(model, onnx_path, data, "val")
        summary["parity"] = {"summary": rep.summary(), "ok": rep.ok()}
        echo(f"[export] parity ONNX Runtime vs PyTorch: {rep.summary()} -> {'OK' if rep.ok() else 'FAILED'}")
        lap("export")
    # 6. benchmark teacher vs students
    if "bench" in cfg.stages:
        from clean_deploy.bench.cpp_sample import sample_binary
        from clean_deploy.bench.run import bench

        models = [str(teacher), str(student), str(compressed)] + ([str(onnx_path)] if onnx_path.is_file() else [])
        try:  # the exported student also through the C++ sample when it is built (make setup builds it)
            sample_binary()
            cpp = True
        except FileNotFoundError as e:
            echo(f"[bench] no C++ sample row: {e}")
            cpp = False
        doc = bench(models, data, out / "bench", frames=cfg.bench_frames, echo=lambda s: None, cpp=cpp)
        summary["bench"] = str(out / "bench" / "bench.md")
        echo(final_table(doc))
        lap("bench")
    return _finish(out, summary, echo)


def final_table(doc: dict) -> str:
    """Teacher vs each student: AP, size, FLOPs, latency and memory ratios."""
    res = doc["results"]
    t = res[0]
    t = BenchResult.from_dict(t)
    rows = []
    for r in (BenchResult.from_dict(x) for x in res):
        def ratio(key_fn):
            a, b = key_fn(t), key_fn(r)
            return f"{a / b:.1f}" if a is not None and b else "-"
        rows.append([r.label, f"{r.mean_moderate_3d:.2f}", f"{r.mean_moderate_3d - t.mean_moderate_3d:+.2f}",
                     ratio(lambda x: x.params), ratio(lambda x: x.gmacs), ratio(lambda x: x.latency.p50()),
                     ratio(lambda x: _at_least(x.peak_memory_mb, 1e-3))])
    lines = [""] + markdown_table(["model [backend]", "mean mod 3D AP", "AP vs teacher", "params x fewer", "FLOPs x fewer",
                                   "latency x faster", "peak mem x lower"], rows)
    return "\n".join(lines) + "\n"


def _at_least(v: float | None, floor: float) -> float | None:
    return None if v is None else max(v, floor)  # None: not measured for that backend (C++ sample)


def _finish(out: Path, summary: dict, echo) -> dict:
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    echo(f"done in {sum(summary['timings_s'].values()) / 60:.1f} min; summary {out / 'demo_summary.json'}")
    for k in ("bev_png", "bench"):
        if k in summary:
            echo(f"  {k}: {summary[k]}")
    if (out / "export" / "student.onnx").is_file():
        echo(f"  ONNX model: {out / 'export' / 'student.onnx'} (+ .json sidecar)")
    if (out / "clean" / "accuracy_vs_latency.png").is_file():
        echo(f"  plots: {out / 'clean' / 'accuracy_vs_latency.png'}, {out / 'bench' / 'accuracy_vs_latency.png'}")
    return summary
