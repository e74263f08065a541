"""The sidecar JSON next to an exported model: everything a C++ runtime needs besides the graph
(pre-processing, tensor names, classes, post-processing parameters, provenance)."""
from __future__ import annotations

import json
from pathlib import Path

from clean_deploy import __version__
from clean_deploy.models.detector import Detector

SIDECAR_VERSION = 1


def build_sidecar(det: Detector, onnx_name: str, feature_size, num_sparse_nodes: int) -> dict:
    from clean_deploy.export.onnx_export import INPUTS, OUTPUTS, redundancy_attributes

    cfg = det.cfg
    return {
        "format": "clean_deploy.sidecar", "version": SIDECAR_VERSION, "clean_deploy_version": __version__,
        "model": onnx_name, "detector": cfg.name,
        "class_names": list(cfg.class_names),
        "preprocess": {
            "point_features": ["x", "y", "z", "intensity"],
            "point_cloud_range": [float(v) for v in cfg.point_cloud_range],
            "voxel_size": [float(v) for v in cfg.voxel_size],
            "grid_size": list(cfg.grid_size),
            "max_points_per_voxel": cfg.max_points_per_voxel,
            "max_voxels": cfg.max_voxels_test,
            "coords_order": "batch z y x",
            "range_rule": "min <= p < max; a point's voxel is floor((p - min) / voxel_size)",
            "voxel_order": "voxels in order of their first point; each keeps its first max_points_per_voxel points",
            "fov_crop": "optional: points projecting into camera 2 (KITTI calib) as in training",
        },
        "inputs": {"voxels": ["V", cfg.max_points_per_voxel, cfg.vfe.num_point_features],
                   "voxel_num_points": ["V"], "voxel_coords": ["V", 4]},
        "input_names": list(INPUTS), "output_names": list(OUTPUTS),
        "outputs": {"boxes": "x y z l w h yaw (LiDAR frame, box centre)", "scores": "rescored confidence",
                    "labels": "0-based index into class_names, -1 padding", "valid_count": "rows of boxes that are valid"},
        "head_feature_size": list(feature_size),
        "postprocess": redundancy_attributes(det),
        "custom_ops": {"domain": "clean_deploy", "version": 1,
                       "ops": ["SparseConvolution", "IoUAwareRedundancyElimination"],
                       "num_sparse_convolutions": num_sparse_nodes},
    }


def write_sidecar(sidecar: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def read_sidecar(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sidecar not found: {path} (written next to the .onnx by `clean-deploy export`)")
    data = json.loads(path.read_text())
    if data.get("format") != "clean_deploy.sidecar":
        raise ValueError(f"{path}: not a clean_deploy sidecar (no 'format' marker)")
    if data.get("version") != SIDECAR_VERSION:
        raise ValueError(f"{path}: sidecar version {data.get('version')}, this runtime reads {SIDECAR_VERSION}")
    return data
