"""One synthetic KITTI frame: scene -> LiDAR sweep -> annotation, deterministic per (seed, index).
Frame ``i`` of seed ``s`` draws everything from ``np.random.default_rng([s, i])``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clean_deploy.data.kitti.label import KittiObject
from clean_deploy.data.synth.config import SynthConfig
from clean_deploy.data.synth.labels import Annotation, annotate
from clean_deploy.data.synth.lidar import Scan, scan_scene
from clean_deploy.data.synth.raycast import RayCaster
from clean_deploy.data.synth.scene import Scene, generate_scene
from clean_deploy.geometry.calib import Calibration, kitti_default_calibration


@dataclass
class SynthFrame:
    """Everything produced for one frame (the files hold ``points``, ``labels``, ``calib``)."""

    index: int
    points: np.ndarray  # (N,4) float32
    labels: list[KittiObject]
    calib: Calibration
    scene: Scene
    scan: Scan
    annotation: Annotation


def frame_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def render_frame(scene: Scene, cfg: SynthConfig, rng: np.random.Generator,
                 calib: Calibration | None = None, index: int = 0) -> SynthFrame:
    """Scan and annotate a given scene (used for generated and hand-made scenes)."""
    calib = calib or kitti_default_calibration()
    caster = RayCaster(scene.prims, scene.ground, (0.0, 0.0, 0.0))
    scan = scan_scene(caster, cfg.lidar, rng, n_objects=len(scene.objects))
    ann = annotate(scene, calib, cfg.label, rng)
    return SynthFrame(index=index, points=scan.points, labels=ann.objects, calib=calib,
                      scene=scene, scan=scan, annotation=ann)


def generate_frame(seed: int, index: int, cfg: SynthConfig | None = None) -> SynthFrame:
    """Frame ``index`` of the benchmark with ``seed`` (independent of any other frame)."""
    cfg = cfg or SynthConfig()
    rng = frame_rng(seed, index)
    scene = generate_scene(rng, cfg.scene, cfg.lidar)
    return render_frame(scene, cfg, rng, index=index)
