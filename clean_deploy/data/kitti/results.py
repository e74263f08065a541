"""Detections (LiDAR boxes, scores, labels) -> KITTI result files (camera-frame lines + score)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import KittiObject, write_label_file
from clean_deploy.geometry.boxes import alpha_from_ry, boxes_lidar_to_camera, boxes_to_image
from clean_deploy.geometry.calib import Calibration


def detections_to_kitti(boxes_lidar: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                        class_names, calib: Calibration, image_shape: tuple[int, int]) -> list[KittiObject]:
    """One frame's detections as KITTI objects: camera boxes, alpha and the 2D box from the P2
    projection of the 3D corners (clipped to the image), as OpenPCDet writes them."""
    boxes_lidar = np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7)
    if len(boxes_lidar) == 0:
        return []
    cam = boxes_lidar_to_camera(boxes_lidar, calib)
    box2d = boxes_to_image(boxes_lidar, calib, image_shape)
    alpha = alpha_from_ry(cam[:, 6], cam[:, 0], cam[:, 2])
    objs = []
    for i in range(len(cam)):
        x, y, z, l, h, w, ry = cam[i]
        objs.append(KittiObject(type=class_names[int(labels[i])], truncated=0.0, occluded=0,
                                alpha=float(alpha[i]), bbox=tuple(float(v) for v in box2d[i]),
                                dimensions=(float(h), float(w), float(l)), location=(float(x), float(y), float(z)),
                                rotation_y=float(ry), score=float(scores[i])))
    return objs


def write_kitti_results(out_dir: str | Path, frame_id: str, objs: list[KittiObject]) -> Path:
    """Write ``out_dir/frame_id.txt`` (an empty file when there are no detections)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{frame_id}.txt"
    write_label_file(path, objs)
    return path
