"""A reference "detector" made from ground truth with controlled errors (localisation jitter,
misses, false positives, confidence tied to quality): exercises the evaluator end to end and
shows what an AP table looks like before any model is trained."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import KittiObject, read_label_file, write_label_file
from clean_deploy.eval.files import read_split_ids


def reference_detections(gt: list[KittiObject], rng: np.random.Generator, jitter: float = 0.15,
                         miss_rate: float = 0.1, fp_per_frame: float = 1.0) -> list[KittiObject]:
    """Jittered copies of the GT objects (DontCare dropped) plus random false positives."""
    out = []
    for o in gt:
        if o.type == "DontCare" or rng.random() < miss_rate:
            continue
        err = rng.normal(0, jitter, 3) * np.array([1.0, 0.3, 1.0])
        scale = 1 + rng.normal(0, 0.03, 3)
        dry = rng.normal(0, 0.05)
        quality = float(np.exp(-np.linalg.norm(err) / max(jitter, 1e-6)))
        score = float(np.clip(0.5 * quality + 0.5 * rng.random(), 0.01, 1.0))
        loc = tuple(float(v) for v in np.asarray(o.location) + err)
        dims = tuple(float(v) for v in np.asarray(o.dimensions) * scale)
        out.append(KittiObject(o.type, o.truncated, o.occluded, o.alpha + dry, o.bbox, dims, loc,
                               o.rotation_y + dry, score))
    for _ in range(rng.poisson(fp_per_frame)):
        x, z = rng.uniform(-15, 15), rng.uniform(5, 50)
        u = 609.6 + 721.5 * x / z
        v = 172.9 + 721.5 * 1.65 / z
        h_px = 721.5 * 1.5 / z
        out.append(KittiObject("Car", 0.0, 0, 0.0, (u - h_px, v - h_px, u + h_px, v), (1.5, 1.6, 3.9),
                               (float(x), 1.65, float(z)), float(rng.uniform(-np.pi, np.pi)),
                               float(rng.uniform(0.01, 0.6))))
    return out


def write_reference_predictions(data_dir: str | Path, split: str, out_dir: str | Path, seed: int = 0,
                                **kwargs) -> Path:
    """Write reference detections for every frame of ``split`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    label_dir = Path(data_dir) / "training" / "label_2"
    for i, fid in enumerate(read_split_ids(data_dir, split)):
        rng = np.random.default_rng([seed, i])
        write_label_file(out_dir / f"{fid}.txt", reference_detections(read_label_file(label_dir / f"{fid}.txt"),
                                                                     rng, **kwargs))
    return out_dir
