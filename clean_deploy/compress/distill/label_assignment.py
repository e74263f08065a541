"""Two-stage-oriented label assignment distillation: the teacher's second stage rates every GT box
(its IoU-guided confidence with the GT as RoI); the student's positives get soft classification
targets ``iou_match^a * quality^(1-a)`` and regression weights from that quality; optionally,
confident teacher detections that no GT explains are added as extra weighted targets."""
from __future__ import annotations

import torch

from clean_deploy.geometry.iou import iou_bev
from clean_deploy.models.heads.anchor_head import AnchorHead


@torch.no_grad()
def teacher_gt_quality(teacher, teacher_out: dict, gt_boxes: torch.Tensor) -> torch.Tensor:
    """(N,M) teacher confidence of each GT box (0 for padding rows)."""
    q, _ = teacher.roi_head.score_boxes(teacher_out["sparse"], gt_boxes[..., :7].contiguous())
    return q * (gt_boxes[..., 7] > 0).to(q.dtype)


def _normalised(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = (w * mask).sum() / mask.sum().clamp(min=1)
    return w / mean.clamp(min=1e-6)


@torch.no_grad()
def distilled_targets(head, preds: dict, gt_boxes: torch.Tensor, quality: torch.Tensor, alpha: float,
                      gamma: float) -> dict:
    """Targets of the student's dense head with the teacher's quality folded in."""
    if isinstance(head, AnchorHead):
        t = head.assign_targets(head.anchors(preds["feature_size"], gt_boxes.device), gt_boxes)
        pos = t["labels"] > 0
        q = quality.gather(1, t["gt_index"].clamp(min=0))
        soft = t["iou"].clamp(0, 1).pow(alpha) * q.clamp(1e-3, 1).pow(1 - alpha)
        t["cls_soft"] = torch.where(pos, soft, torch.zeros_like(soft))
        t["box_weight"] = _normalised(q.clamp(min=1e-3).pow(gamma), pos)
        return t
    t = head.assign_targets(gt_boxes, preds["feature_size"])
    t["obj_weight"] = _normalised(quality.clamp(min=1e-3).pow(gamma), t["mask"])
    return t


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
