"""Category-aware foreground masks on a BEV grid: cells inside (enlarged) GT boxes and confident
teacher boxes get their class weight, the rest a small background weight."""
from __future__ import annotations

import torch


def bev_cell_centres(point_cloud_range, size: tuple[int, int], device=None) -> torch.Tensor:
    """(H*W, 2) x/y centres of an H x W BEV grid spanning the range."""
    h, w = size
    x0, y0, _, x1, y1, _ = point_cloud_range
    xs = x0 + (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * (x1 - x0) / w
    ys = y0 + (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * (y1 - y0) / h
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


def inside_bev(centres: torch.Tensor, boxes: torch.Tensor, enlarge: float) -> torch.Tensor:
    """(P,2) cell centres, (M,7) boxes -> (P,M) bool: centre inside the box grown by ``enlarge``."""
    if boxes.shape[0] == 0:
        return torch.zeros(centres.shape[0], 0, dtype=torch.bool, device=centres.device)
    d = centres[:, None, :] - boxes[None, :, 0:2]
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    return (lx.abs() <= boxes[:, 3] / 2 + enlarge) & (ly.abs() <= boxes[:, 4] / 2 + enlarge)


def foreground_mask(gt_boxes: torch.Tensor, teacher_dets: list[dict] | None, point_cloud_range,
                    size: tuple[int, int], class_weights, bg_weight: float, enlarge: float,
                    teacher_score: float) -> torch.Tensor:
    """(N, H, W) weights: max over the frame's GT boxes (column 7 = 1-based class) and teacher
    detections scoring >= ``teacher_score`` of their class weight; ``bg_weight`` elsewhere."""
    n = gt_boxes.shape[0]
    h, w = size
    centres = bev_cell_centres(point_cloud_range, size, gt_boxes.device)
    cw = torch.as_tensor(class_weights, dtype=torch.float32, device=gt_boxes.device)
    out = torch.full((n, h * w), float(bg_weight), device=gt_boxes.device)
    for b in range(n):
        g = gt_boxes[b]
        g = g[g[:, 7] > 0]
        boxes, cls = g[:, :7], g[:, 7].long() - 1
        if teacher_dets is not None:
            t = teacher_dets[b]
            keep = t["scores"] >= teacher_score
            boxes = torch.cat([boxes, t["boxes"][keep, :7].to(boxes.dtype)])
            cls = torch.cat([cls, t["labels"][keep].long()])
        if boxes.shape[0] == 0:
            continue
        inside = inside_bev(centres, boxes, enlarge).to(torch.float32) * cw[cls][None, :]
        out[b] = torch.maximum(out[b], inside.max(1).values)
    return out.view(n, h, w)
