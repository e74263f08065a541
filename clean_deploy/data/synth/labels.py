"""KITTI annotation of a synthetic scene: camera-2 field of view, truncation, occlusion level
from ray casting, 2D boxes from the P2 projection, DontCare regions for far/tiny objects."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clean_deploy.data.kitti.label import KittiObject
from clean_deploy.data.synth.config import LabelConfig
from clean_deploy.data.synth.raycast import RayCaster
from clean_deploy.data.synth.scene import Scene
from clean_deploy.geometry.boxes import (alpha_from_ry, boxes_lidar_to_camera, boxes_to_image,
                                         corners_3d, limit_period)
from clean_deploy.geometry.calib import Calibration

STATUS_LABEL, STATUS_DONTCARE = "label", "dontcare"


@dataclass
class Annotation:
    """KITTI lines of a frame plus per-scene-object diagnostics."""

    objects: list[KittiObject]  # labels first, then DontCare regions
    label_obj: list[int]  # scene object index of each labelled line (DontCare lines excluded)
    status: list[str]  # per scene object: label, dontcare, outside, truncated, hidden, tiny
    visible: np.ndarray  # (n_obj,) visible fraction (nan when not measured / unknown)
    truncation: np.ndarray  # (n_obj,) (nan outside the image)


def camera_center_lidar(calib: Calibration) -> np.ndarray:
    """Optical centre of camera 2 in LiDAR coordinates."""
    m = calib.P2[:, :3]
    c_rect = -np.linalg.solve(m, calib.P2[:, 3])
    return calib.rect_to_lidar(c_rect[None])[0]


def pixel_rays_lidar(calib: Calibration, uv: np.ndarray) -> np.ndarray:
    """(N,2) pixels of camera 2 -> (N,3) unit ray directions in LiDAR coordinates."""
    m = calib.P2[:, :3]
    hom = np.concatenate([uv, np.ones((len(uv), 1))], 1)
    d_rect = np.linalg.solve(m, hom.T).T
    d = d_rect @ calib.rect_to_velo[:3, :3].T
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def occlusion_level(vis: float, cfg: LabelConfig) -> int:
    if not np.isfinite(vis):
        return 3
    if vis >= cfg.occ_full:
        return 0
    if vis >= cfg.occ_partly:
        return 1
    return 2


def _merge_boxes(boxes: list[np.ndarray]) -> list[np.ndarray]:
    boxes = [b.copy() for b in boxes]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    boxes[i] = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
                    boxes.pop(j)
                    merged = True
                    break
            if merged:
                break
    return boxes


def visible_fractions(scene: Scene, calib: Calibration, boxes2d: np.ndarray,
                      which: np.ndarray, cfg: LabelConfig, seed: int = 0) -> np.ndarray:
    """Visible fraction of objects ``which`` inside their clipped 2D boxes (nan if unknown)."""
    out = np.full(len(scene.objects), np.nan)
    if len(which) == 0:
        return out
    uvs, owner = [], []
    for k in which:
        x1, y1, x2, y2 = boxes2d[k]
        nu = int(np.clip(np.ceil((x2 - x1) / cfg.vis_grid_px), 2, cfg.vis_grid_max))
        nv = int(np.clip(np.ceil((y2 - y1) / cfg.vis_grid_px), 2, cfg.vis_grid_max))
        gu = x1 + (np.arange(nu) + 0.5) * (x2 - x1) / nu
        gv = y1 + (np.arange(nv) + 0.5) * (y2 - y1) / nv
        uu, vv = np.meshgrid(gu, gv)
        uvs.append(np.stack([uu.ravel(), vv.ravel()], 1))
        owner.append(np.full(nu * nv, k))
    uv = np.concatenate(uvs)
    owner = np.concatenate(owner)
    caster = RayCaster(scene.prims, scene.ground, camera_center_lidar(calib))
    dirs = pixel_rays_lidar(calib, uv)
    first = caster.cast(dirs, seed=seed).obj
    lo = np.array([scene.objects[k].prim_lo for k in owner])
    hi = np.array([scene.objects[k].prim_hi for k in owner])
    alone = np.isfinite(caster.cast_subset(dirs, lo, hi))
    seen = alone & (first == owner)
    n_alone = np.bincount(owner, weights=alone, minlength=len(out))
    n_seen = np.bincount(owner, weights=seen, minlength=len(out))
    for k in which:
        if n_alone[k] > 0:
            out[k] = n_seen[k] / n_alone[k]
    return out


def annotate(scene: Scene, calib: Calibration, cfg: LabelConfig,
             rng: np.random.Generator) -> Annotation:
    """KITTI label lines for the objects of ``scene`` visible in camera 2.

    Rules (measured on the scene, as an annotator would judge the image):

    * candidate: some box corner in front of camera 2 and the projected 3D box overlaps the image;
    * truncation = fraction of the unclipped projected 2D box area outside the 1242x375 image;
      objects truncated more than ``LabelConfig.max_truncation`` are not annotated;
    * visible fraction = (camera rays through the object's in-image 2D box whose first hit in the
      full scene is the object) / (the same rays that hit the object cast alone). This is the
      brief's "hits in the scene / hits alone" ratio, measured with a uniform grid of rays from the
      camera (up to 24x24 per object) instead of the sparse, height-biased LiDAR beams, so it is
      defined for far objects too, is not biased by the beam pattern, and describes the image the
      labels refer to. Occluded 0 if >= 0.8, 1 if >= 0.4, 2 if > 0; objects with no visible ray are
      hidden in the image and get no label; if no ray hits the object even alone (a few pixels),
      visibility is unknown: occluded 3. Far objects with zero LiDAR points are still labelled with
      their image occlusion (KITTI annotators worked from the images);
    * DontCare: objects beyond a per-frame annotation range (KITTI labelled to ~70-80 m) or whose 2D
      box is lower than ``min_height_px`` become DontCare regions (clipped 2D box, -1/-10
      placeholders); overlapping DontCare boxes are merged, as KITTI often groups far cars.
    """
    n = len(scene.objects)
    status = ["outside"] * n
    vis = np.full(n, np.nan)
    trunc = np.full(n, np.nan)
    annot_range = float(rng.uniform(*cfg.annot_range))
    vis_seed = int(rng.integers(0, 2**62))
    if n == 0:
        return Annotation([], [], status, vis, trunc)
    h_img, w_img = cfg.image_shape
    boxes = scene.boxes
    cam = boxes_lidar_to_camera(boxes, calib)
    depth = calib.lidar_to_rect(corners_3d(boxes).reshape(-1, 3))[:, 2].reshape(n, 8)
    raw = boxes_to_image(boxes, calib)
    clip = boxes_to_image(boxes, calib, cfg.image_shape)
    in_img = (depth.max(1) > 0.3) & (raw[:, 2] > 0) & (raw[:, 0] < w_img - 1) & \
        (raw[:, 3] > 0) & (raw[:, 1] < h_img - 1)
    area_raw = (raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1])
    area_clip = (clip[:, 2] - clip[:, 0]) * (clip[:, 3] - clip[:, 1])
    in_img &= area_clip > 0
    trunc[in_img] = np.clip(1.0 - area_clip[in_img] / np.maximum(area_raw[in_img], 1e-9), 0, 1)
    cand = np.flatnonzero(in_img & (trunc <= cfg.max_truncation))
    for k in np.flatnonzero(in_img & (trunc > cfg.max_truncation)):
        status[k] = "truncated"
    vis = visible_fractions(scene, calib, clip, cand, cfg, vis_seed)

    labels: list[KittiObject] = []
    label_obj: list[int] = []
    dontcare: list[np.ndarray] = []
    for k in cand:
        if vis[k] == 0.0:
            status[k] = "hidden"
            continue
        height_px = clip[k, 3] - clip[k, 1]
        if cam[k, 2] > annot_range or height_px < cfg.min_height_px:
            if height_px >= cfg.dontcare_min_height_px:
                status[k] = STATUS_DONTCARE
                dontcare.append(clip[k].copy())
            else:
                status[k] = "tiny"
            continue
        status[k] = STATUS_LABEL
        x, y, z, l, h, w, ry = cam[k]
        ry = float(limit_period(ry, 0.5, 2 * np.pi))
        labels.append(KittiObject(
            type=scene.objects[k].cls, truncated=float(round(trunc[k], 2)),
            occluded=occlusion_level(vis[k], cfg), alpha=float(alpha_from_ry(ry, x, z)),
            bbox=tuple(float(v) for v in clip[k]), dimensions=(float(h), float(w), float(l)),
            location=(float(x), float(y), float(z)), rotation_y=ry))
        label_obj.append(int(k))
    for b in _merge_boxes(dontcare):
        labels.append(KittiObject(type="DontCare", truncated=-1.0, occluded=-1, alpha=-10.0,
                                  bbox=tuple(float(v) for v in b), dimensions=(-1.0, -1.0, -1.0),
                                  location=(-1000.0, -1000.0, -1000.0), rotation_y=-10.0))
    return Annotation(labels, label_obj, status, vis, trunc)
