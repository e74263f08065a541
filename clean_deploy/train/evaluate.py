"""Run a detector over a split, write KITTI result files and evaluate them with the KITTI
protocol (optionally restricted to the detector's point-cloud range)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from clean_deploy.data.dataset import KittiDetectionDataset, collate_batch
from clean_deploy.data.kitti.results import detections_to_kitti, write_kitti_results
from clean_deploy.eval.files import load_annos, restrict_to_range  # noqa: F401  (restrict_to_range: re-exported)
from clean_deploy.eval.kitti_protocol import evaluate
from clean_deploy.models.detector import Detector
from clean_deploy.kitti import KITTI_CLASSES
from clean_deploy.train.loop import batch_to_device, experiment_for


@dataclass
class InferenceRun:
    frame_ids: list[str] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)  # numpy boxes/scores/labels(/iou) per frame
    seconds: float = 0.0


@torch.no_grad()
def predict_split(model: Detector, data_root: str | Path, split: str = "val", batch_size: int = 2,
                  device: torch.device | str = "cpu", pred_dir: str | Path | None = None,
                  progress: bool = True, num_workers: int = 0, first_stage: bool = False) -> InferenceRun:
    """Predictions of ``model`` on every frame of ``split``; KITTI result files go to ``pred_dir``.
    ``first_stage``: a two-stage detector's boxes before the RoI head (:meth:`Detector.decode`)."""
    cfg = model.cfg
    exp = experiment_for(cfg, data_root)
    ds = KittiDetectionDataset(exp, cfg, split=split, training=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_batch,
                                         num_workers=num_workers)
    model.eval().to(device)
    run = InferenceRun()
    t0 = time.time()
    empty: list[str] = []
    for batch in tqdm(loader, desc=f"predict {split}", disable=not progress, dynamic_ncols=True, leave=False):
        counts = torch.bincount(batch["voxel_coords"][:, 0].long(), minlength=len(batch["frame_id"]))
        empty += [str(f) for f, c in zip(batch["frame_id"], counts.tolist()) if c == 0]
        dev_batch = batch_to_device(batch, torch.device(device))
        preds = model.predict(model(dev_batch), first_stage=first_stage)
        for i, p in enumerate(preds):
            fid = str(batch["frame_id"][i])
            rec = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
            run.frame_ids.append(fid)
            run.predictions.append(rec)
            if pred_dir is not None:
                objs = detections_to_kitti(rec["boxes"], rec["scores"], rec["labels"], cfg.class_names,
                                           batch["calib"][i], tuple(int(v) for v in batch["image_shape"][i]))
                write_kitti_results(pred_dir, fid, objs)
    run.seconds = time.time() - t0
    if empty:
        print(f"predict {split}: {len(empty)} of {len(run.frame_ids)} frames have no point inside the model's range "
              f"(no detections): {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    return run


def evaluate_predictions(data_root: str | Path, split: str, pred_dir: str | Path, class_names,
                         eval_range=None, frame_ids: list[str] | None = None) -> dict:
    """KITTI AP of ``pred_dir`` (dict of :func:`clean_deploy.eval.kitti_protocol.evaluate`);
    ``eval_range`` restricts it to a LiDAR x/y range (see :func:`restrict_to_range`); ``frame_ids``
    to those frames of the split."""
    _, gt, dt = load_annos(data_root, split, pred_dir, frame_ids=frame_ids, eval_range=eval_range)
    classes = tuple(c for c in class_names if c in KITTI_CLASSES)
    return evaluate(gt, dt, classes)


def mean_moderate_ap(result: dict, metric: str = "3d") -> float:
    """Mean over the evaluated classes of the moderate AP (the project's headline number)."""
    vals = [v[metric]["moderate"] for k, v in result.items() if not k.startswith("_")]
    return float(np.mean(vals)) if vals else 0.0
