"""Two-stage-oriented label assignment distillation: the teacher's second stage rates every GT box
(its IoU-guided confidence with the GT as RoI; optionally times its first stage's probability of the
GT's class); the student's positives get soft classification targets ``iou_match^a * quality^(1-a)``
(anchor heads: positive anchors; centre heads: the objects' heatmap peaks) and regression weights
from that quality; optionally, confident teacher detections that no GT explains are added as extra
weighted targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from clean_deploy.compress.distill.response_kd import class_logit_map

from clean_deploy.geometry.iou import iou_bev


@torch.no_grad()
def teacher_class_probability(teacher, teacher_out: dict, gt_boxes: torch.Tensor) -> torch.Tensor:
    """(N,M) the teacher's first-stage probability of each GT's own class at the GT centre (the
    best cell of the 3x3 neighbourhood of the centre cell: anchors or peaks of the object may sit
    one cell off). 0 for padding rows and centres outside the map."""
    logits = class_logit_map(teacher.dense_head, teacher_out["dense"])  # (N,C,H,W)
    n, c, h, w = logits.shape
    prob = F.max_pool2d(torch.sigmoid(logits), 3, stride=1, padding=1)
    x0, y0, _, x1, y1, _ = teacher.cfg.point_cloud_range
    ix = ((gt_boxes[..., 0] - x0) / ((x1 - x0) / w)).floor().long()
    iy = ((gt_boxes[..., 1] - y0) / ((y1 - y0) / h)).floor().long()
    cls = gt_boxes[..., 7].long() - 1
    ok = (gt_boxes[..., 7] > 0) & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (cls < c)
    flat = (cls.clamp(0, c - 1) * h + iy.clamp(0, h - 1)) * w + ix.clamp(0, w - 1)
    p = prob.reshape(n, -1).gather(1, flat)
    return torch.where(ok, p, torch.zeros_like(p))


@torch.no_grad()
def teacher_gt_quality(teacher, teacher_out: dict, gt_boxes: torch.Tensor, class_aware: bool = False) -> torch.Tensor:
    """(N,M) the teacher's quality of each GT box (0 for padding rows): its second stage's
    IoU-guided confidence of the box as a RoI, times (``class_aware``) its first stage's probability
    of the GT's class there (:func:`teacher_class_probability`): an object the teacher localises
    well but confuses with another class gets a low quality too."""
    q, _ = teacher.roi_head.score_boxes(teacher_out["sparse"], gt_boxes[..., :7].contiguous(), gt_boxes[..., 7] > 0)
    if class_aware:
        q = q * teacher_class_probability(teacher, teacher_out, gt_boxes)
    return q * (gt_boxes[..., 7] > 0).to(q.dtype)


@torch.no_grad()
def distilled_targets(head, preds: dict, gt_boxes: torch.Tensor, quality: torch.Tensor, alpha: float,
                      gamma: float, soft_peaks: bool = True, class_norm: bool = False,
                      target: str = "peaks") -> dict:
    """Targets of the student's dense head with the teacher's quality folded in: soft
    classification targets (anchor heads: positives' ``cls_soft``; centre heads: soft peaks, unless
    ``soft_peaks`` is off, which falls back to quality-weighted peaks) and quality-weighted
    regression (:meth:`~clean_deploy.models.heads.base.DenseHead.quality_targets`); ``target="iou_branch"``:
    the quality in the IoU branch's target only."""
    return head.quality_targets(preds, gt_boxes, quality, alpha, gamma, soft_peaks, class_norm, target)


@torch.no_grad()
def add_teacher_boxes(gt_boxes: torch.Tensor, teacher_dets: list[dict], score_thresh: float) -> torch.Tensor:
    """GT (N,M,8) extended with teacher detections scoring >= ``score_thresh`` that overlap no GT."""
    extra = []
    for b, det in enumerate(teacher_dets):
        g = gt_boxes[b]
        g = g[g[:, 7] > 0]
        keep = det["scores"] >= score_thresh
        boxes, labels = det["boxes"][keep, :7], det["labels"][keep]
        if len(boxes) and len(g):
            keep = iou_bev(boxes, g[:, :7]).max(1).values < 0.1
            boxes, labels = boxes[keep], labels[keep]
        extra.append(torch.cat([boxes, (labels + 1).to(boxes.dtype)[:, None]], 1))
    m = max(len(e) for e in extra)
    if m == 0:
        return gt_boxes
    pad = gt_boxes.new_zeros(gt_boxes.shape[0], m, 8)
    for b, e in enumerate(extra):
        pad[b, : len(e)] = e.to(pad.dtype)
    return torch.cat([gt_boxes, pad], 1)
