"""Synthetic KITTI-format LiDAR benchmark: ray-cast street scenes seen by an HDL-64E-like sensor.
Public API: configs, ``generate_frame`` / ``generate_dataset``, scene building blocks for tests."""
from clean_deploy.data.synth.config import (GENERATOR_VERSION, LabelConfig, LidarConfig,
                                            SceneConfig, SynthConfig)
from clean_deploy.data.synth.frame import SynthFrame, frame_rng, generate_frame, render_frame
from clean_deploy.data.synth.lidar import Scan, beam_elevations, ray_directions, scan_scene
from clean_deploy.data.synth.raycast import RayCaster
from clean_deploy.data.synth.scene import Scene, SceneBuilder, flat_ground, generate_scene
from clean_deploy.data.synth.writer import format_label_line, generate_dataset, write_frame

__all__ = ["GENERATOR_VERSION", "LabelConfig", "LidarConfig", "SceneConfig", "SynthConfig",
           "SynthFrame", "frame_rng", "generate_frame", "render_frame", "Scan", "beam_elevations",
           "ray_directions", "scan_scene", "RayCaster", "Scene", "SceneBuilder", "flat_ground",
           "generate_scene", "format_label_line", "generate_dataset", "write_frame"]
