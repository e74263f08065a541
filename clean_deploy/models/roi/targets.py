"""RoI sampling and targets as Voxel R-CNN does: fg/hard-bg/easy-bg sampling by 3D IoU,
IoU-guided classification targets and box residuals in each RoI's canonical frame."""
from __future__ import annotations

import math

import torch

from clean_deploy.geometry.boxes import limit_period, rotate_points_z_batch
from clean_deploy.geometry.coder import ResidualCoder
from clean_deploy.geometry.iou import iou_3d
from clean_deploy.models.config import RoIHeadConfig


def _choice(idx: torch.Tensor, k: int, gen: torch.Generator | None) -> torch.Tensor:
    if k <= 0 or len(idx) == 0:
        return idx[:0]
    if len(idx) >= k:
        return idx[torch.randperm(len(idx), generator=gen, device="cpu")[:k].to(idx.device)]
    return idx[torch.randint(len(idx), (k,), generator=gen, device="cpu").to(idx.device)]


@torch.no_grad()
def sample_rois(cfg: RoIHeadConfig, proposals: dict, gt_boxes: torch.Tensor,
                gen: torch.Generator | None = None) -> dict:
    """Sample ``cfg.roi_per_image`` RoIs per frame and attach their matched GT and IoU.

    The frame's GT boxes are appended to the proposal pool (jitter-free), which guarantees
    foreground RoIs early in training when the first stage is still poor.
    """
    n, r_total = proposals["rois"].shape[:2]
    k = cfg.roi_per_image
    dev = gt_boxes.device
    out_rois = gt_boxes.new_zeros(n, k, 7)
    out_labels = torch.zeros(n, k, dtype=torch.long, device=dev)
    out_iou = gt_boxes.new_zeros(n, k)
    out_gt = gt_boxes.new_zeros(n, k, 7)
    fg_quota = int(round(cfg.fg_ratio * k))
    for b in range(n):
        valid = proposals["valid"][b]
        rois = proposals["rois"][b][valid]
        labels = proposals["roi_labels"][b][valid]
        gt = gt_boxes[b]
        gt = gt[gt[:, 7] > 0]
        if len(gt):
            rois = torch.cat([rois, gt[:, :7]], 0)
            labels = torch.cat([labels, gt[:, 7].long() - 1], 0)
            overlaps = iou_3d(rois, gt[:, :7])
            # a RoI only matches GT of its own class
            same = labels[:, None] == (gt[None, :, 7].long() - 1)
            overlaps = torch.where(same, overlaps, torch.zeros_like(overlaps))
            max_iou, gt_idx = overlaps.max(1)
        else:
            max_iou = rois.new_zeros(len(rois))
            gt_idx = torch.zeros(len(rois), dtype=torch.long, device=dev)
        fg_thresh = min(cfg.reg_fg_thresh, cfg.cls_fg_thresh)
        fg = (max_iou >= fg_thresh).nonzero(as_tuple=True)[0]
        easy_bg = (max_iou < cfg.cls_bg_thresh_lo).nonzero(as_tuple=True)[0]
        hard_bg = ((max_iou < cfg.reg_fg_thresh) & (max_iou >= cfg.cls_bg_thresh_lo)).nonzero(as_tuple=True)[0]
        n_fg = min(fg_quota, len(fg))
        if len(easy_bg) + len(hard_bg) == 0:
            n_fg = k
        fg_sel = _choice(fg, n_fg, gen)
        n_bg = k - len(fg_sel)
        if len(hard_bg) and len(easy_bg):
            n_hard = min(int(round(n_bg * cfg.hard_bg_ratio)), n_bg)
            bg_sel = torch.cat([_choice(hard_bg, n_hard, gen), _choice(easy_bg, n_bg - n_hard, gen)])
        else:
            bg_sel = _choice(hard_bg if len(hard_bg) else easy_bg, n_bg, gen)
        sel = torch.cat([fg_sel, bg_sel])
        if len(sel) == 0:  # no proposals and no GT: keep zeros (all background)
            continue
        m = len(sel)
        out_rois[b, :m] = rois[sel]
        out_labels[b, :m] = labels[sel]
        out_iou[b, :m] = max_iou[sel]
        if len(gt):
            out_gt[b, :m] = gt[gt_idx[sel], :7]
    return {"rois": out_rois, "roi_labels": out_labels, "iou": out_iou, "gt_of_rois": out_gt}


def canonical_targets(rois: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """GT expressed in its RoI's frame (centre at origin, heading 0), heading flipped into
    [-pi/2, pi/2] as Voxel R-CNN does. (K,7) each -> (K,7)."""
    local = gt.clone()
    local[:, 0:3] = gt[:, 0:3] - rois[:, 0:3]
    local[:, 0:3] = rotate_points_z_batch(local[:, None, 0:3], -rois[:, 6])[:, 0]
    heading = limit_period(gt[:, 6] - rois[:, 6], 0.0, 2 * math.pi)
    opposite = (heading > math.pi / 2) & (heading < 1.5 * math.pi)
    heading = torch.where(opposite, limit_period(heading + math.pi, 0.0, 2 * math.pi), heading)
    heading = torch.where(heading > math.pi, heading - 2 * math.pi, heading)
    local[:, 6] = heading.clamp(-math.pi / 2, math.pi / 2)
    return local


def local_anchor(rois: torch.Tensor) -> torch.Tensor:
    """RoIs with centre zeroed and heading 0: the 'anchor' the refinement residuals refer to."""
    a = rois.clone()
    a[:, 0:3] = 0
    a[:, 6] = 0
    return a


def encode_roi_targets(coder: ResidualCoder, rois: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return coder.encode(canonical_targets(rois, gt), local_anchor(rois))


def decode_roi_boxes(coder: ResidualCoder, rois: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Refinement residuals (K,C) of RoIs (K,7) -> refined LiDAR boxes (K,7)."""
    local = coder.decode(codes, local_anchor(rois))
    xyz = rotate_points_z_batch(local[:, None, 0:3], rois[:, 6])[:, 0] + rois[:, 0:3]
    return torch.cat([xyz, local[:, 3:6], (local[:, 6] + rois[:, 6])[:, None]], 1)


def iou_guided_cls_target(cfg: RoIHeadConfig, iou: torch.Tensor) -> torch.Tensor:
    """Voxel R-CNN's soft classification target: 0 below cls_bg, 1 above cls_fg, linear between."""
    return ((iou - cfg.cls_bg_thresh) / (cfg.cls_fg_thresh - cfg.cls_bg_thresh)).clamp(0, 1)
