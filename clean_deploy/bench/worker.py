"""One benchmark job in its own process (run by :mod:`clean_deploy.bench.run`): load a model on a
backend, time it on the split's frames, measure memory, evaluate AP, write a JSON result."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def _torch_session(model_path: str, device: str):
    from clean_deploy.runtime.torch_session import TorchSession
    from clean_deploy.models.checkpoint import load_detector

    model, _ = load_detector(model_path)
    return TorchSession(model, device), model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", required=True, choices=["torch", "onnxruntime"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-frames", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    # ONNX Runtime jobs give every thread to ORT's pool: torch only runs the voxeliser there, and its
    # idle OpenMP workers would spin against ORT's threads (2 cores: network 21.3 -> 19.2 ms p50)
    torch.set_num_threads(1 if args.backend == "onnxruntime" else args.threads)

    from clean_deploy.bench.latency import benchmark_session
    from clean_deploy.bench.memory import measure_run_memory
    from clean_deploy.bench.model_info import exported_model_info, load_frames, model_summary
    from clean_deploy.data.kitti.results import detections_to_kitti, write_kitti_results
    from clean_deploy.runtime.ort_session import OrtSession
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap

    frames = load_frames(args.data, args.split)
    if args.backend == "torch":
        session, model = _torch_session(args.model, args.device)
        info = model_summary(model, frames[:5])
    else:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device != "cpu" else None
        session = OrtSession(args.model, threads=args.threads, providers=providers, strict_max_voxels=False)
        info = exported_model_info(args.model, frames[:5])
    lat = benchmark_session(session, frames[: args.frames], args.warmup, progress=False)
    # accuracy on the whole split with the same session
    from clean_deploy.data.kitti.reader import KittiReader

    reader = KittiReader(args.data, args.split)
    pred_dir = Path(args.out).with_suffix("") / "pred"
    class_names = session.class_names if hasattr(session, "class_names") else model.cfg.class_names
    pcr = (session.sidecar["preprocess"]["point_cloud_range"] if hasattr(session, "sidecar")
           else model.cfg.point_cloud_range)
    for fid, (points, calib) in zip(reader.frame_ids, frames):
        det = session(points, calib)
        write_kitti_results(pred_dir, fid, detections_to_kitti(det.boxes, det.scores, det.labels, class_names, calib,
                                                               reader.read_image_shape(fid)))
    ap = evaluate_predictions(args.data, args.split, pred_dir, class_names, pcr)
    # memory last: it switches the allocator to return freed pages (slower, so never while timing);
    # ONNX Runtime gets a session without its arena, which would otherwise keep the warm-up's blocks
    if args.backend == "onnxruntime" and args.device == "cpu":
        session = OrtSession(args.model, threads=args.threads, strict_max_voxels=False, memory_arena=False)
        session(*frames[0])
    mem = measure_run_memory(session, frames[: args.memory_frames], args.device)
    mem["weights_mb"] = info["weight_mb"]
    mem["peak_inference_mb"] = mem["weights_mb"] + mem["run_peak_mb"]
    res = {"model": args.model, "backend": args.backend, "device": args.device, "threads": args.threads,
           **info, "latency": lat, "memory": mem, "ap": ap, "mean_moderate_3d": mean_moderate_ap(ap)}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
