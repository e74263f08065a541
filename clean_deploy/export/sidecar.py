"""Builds the sidecar JSON (schema, reading and validation: :mod:`clean_deploy.sidecar`) of an
exported detector, including the attributes of its decode + redundancy-elimination node."""
from __future__ import annotations

from clean_deploy import __version__
from clean_deploy.models.detector import Detector
from clean_deploy.sidecar import INPUTS, OUTPUTS, SIDECAR_VERSION


def redundancy_attributes(det: Detector) -> dict:
    """Attributes of the decode + RE node reproducing the model's post-processing exactly."""
    cfg, head = det.cfg, det.dense_head
    n = len(cfg.class_names)
    post = cfg.post
    if post.redundancy is not None:
        re = post.redundancy
        attrs = dict(beta=list(re.beta), score_thresh=re.score_thresh, min_iou=list(re.min_iou),
                     nms_thresh=list(re.nms_thresh), cross_class_thresh=re.cross_class_thresh,
                     pre_max=re.pre_max, max_output=re.max_output)
    else:  # plain class-aware NMS expressed with the same node
        attrs = dict(beta=[0.0] * n, score_thresh=post.score_thresh, min_iou=[0.0] * n,
                     nms_thresh=[float(post.nms_thresh)] * n, cross_class_thresh=1.0,
                     pre_max=post.nms_pre_max, max_output=post.nms_post_max)
    attrs["num_classes"] = n
    attrs.update(head.export_attributes())
    return attrs


def build_sidecar(det: Detector, onnx_name: str, feature_size, num_sparse_nodes: int) -> dict:
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


