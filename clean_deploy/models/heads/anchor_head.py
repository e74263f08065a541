"""Multi-class anchor head (SECOND/PointPillars): per-class anchors, focal-loss classification,
smooth-L1 residuals, direction classifier and the optional IoU-quality branch."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from clean_deploy.geometry.coder import ResidualCoder
from clean_deploy.geometry.iou import iou_bev_nearest
from clean_deploy.models.config import AnchorHeadConfig
from clean_deploy.models.heads import losses as L
from clean_deploy.models.heads.base import DenseHead
from clean_deploy.models.heads.iou_quality import blend_iou_target, iou_loss, iou_targets


def generate_anchors(cfg: AnchorHeadConfig, point_cloud_range, feature_size: tuple[int, int],
                     device=None) -> torch.Tensor:
    """Anchors ``(H, W, A, 7)`` at the centres of the feature-map cells; A = classes x rotations,
    class-major (anchor ``a`` belongs to class ``a // num_rotations``)."""
    h, w = feature_size
    x0, y0, _, x1, y1, _ = point_cloud_range
    xs = x0 + (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * (x1 - x0) / w
    ys = y0 + (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * (y1 - y0) / h
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    per = []
    for a in cfg.anchors:
        for r in a.rotations:
            size = torch.tensor(a.size, dtype=torch.float32, device=device)
            z = a.bottom_height + a.size[2] / 2
            box = torch.stack([gx, gy, torch.full_like(gx, z),
                               size[0].expand_as(gx), size[1].expand_as(gx), size[2].expand_as(gx),
                               torch.full_like(gx, r)], -1)
            per.append(box)
    return torch.stack(per, 2)


class AnchorHead(DenseHead):
    """1x1 conv predictions per anchor: class logits, box residuals, direction bins, IoU logit."""

    head_type = "anchor"

    @classmethod
    def from_config(cls, head_cfg: AnchorHeadConfig, in_channels: int, det_cfg, feature_stride: float) -> "AnchorHead":
        return cls(head_cfg, in_channels, det_cfg.class_names, det_cfg.point_cloud_range)

    def __init__(self, cfg: AnchorHeadConfig, in_channels: int, class_names, point_cloud_range) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = len(class_names)
        self.num_rot = len(cfg.anchors[0].rotations)
        if any(len(a.rotations) != self.num_rot for a in cfg.anchors):
            raise ValueError("anchor_head: every class needs the same number of rotations")
        self.num_anchors = self.num_classes * self.num_rot
        self.point_cloud_range = tuple(point_cloud_range)
        self.coder = ResidualCoder(sincos=cfg.encode_angle_by_sincos)
        a, cs = self.num_anchors, self.coder.code_size
        self.conv_cls = nn.Conv2d(in_channels, a * self.num_classes, 1)
        self.conv_box = nn.Conv2d(in_channels, a * cs, 1)
        self.conv_dir = nn.Conv2d(in_channels, a * cfg.num_dir_bins, 1) if cfg.use_direction_classifier else None
        self.conv_iou = nn.Conv2d(in_channels, a, 1) if cfg.iou_branch else None
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.normal_(self.conv_box.weight, std=0.001)
        nn.init.zeros_(self.conv_box.bias)
        self._anchor_cache: dict = {}

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> dict:
        n, _, h, w = x.shape
        out = {
            "cls": self.conv_cls(x).permute(0, 2, 3, 1).reshape(n, h * w * self.num_anchors, self.num_classes),
            "box": self.conv_box(x).permute(0, 2, 3, 1).reshape(n, h * w * self.num_anchors, -1),
            "feature_size": (h, w),
        }
        if self.conv_dir is not None:
            out["dir"] = self.conv_dir(x).permute(0, 2, 3, 1).reshape(n, h * w * self.num_anchors, -1)
        if self.conv_iou is not None:
            out["iou"] = self.conv_iou(x).permute(0, 2, 3, 1).reshape(n, h * w * self.num_anchors)
        return out

    def anchors(self, feature_size: tuple[int, int], device) -> torch.Tensor:
        key = (tuple(feature_size), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = generate_anchors(self.cfg, self.point_cloud_range, feature_size, device)
        return self._anchor_cache[key]

    # ------------------------------------------------------------------ targets
    @torch.no_grad()
    def assign_targets(self, anchors: torch.Tensor, gt_boxes: torch.Tensor) -> dict:
        """Per-class IoU matching (nearest-BEV IoU, forced best match per GT).

        ``anchors`` (H,W,A,7); ``gt_boxes`` (N,M,8) with 1-based class in column 7 (0 = padding).
        Returns labels (N,K) (0 bg, -1 ignore, c+1 class c), matched GT boxes (N,K,7), the index of
        the matched GT in ``gt_boxes`` (N,K) (-1 none) and the matching IoU (N,K).
        """
        h, w, a, _ = anchors.shape
        flat = anchors.reshape(-1, 7)
        anchor_cls = torch.arange(a, device=anchors.device).div(self.num_rot, rounding_mode="floor")
        anchor_cls = anchor_cls[None, None, :].expand(h, w, a).reshape(-1)
        n = gt_boxes.shape[0]
        labels = torch.zeros(n, flat.shape[0], dtype=torch.long, device=anchors.device)
        matched = torch.zeros(n, flat.shape[0], 7, dtype=anchors.dtype, device=anchors.device)
        gt_index = torch.full((n, flat.shape[0]), -1, dtype=torch.long, device=anchors.device)
        match_iou = torch.zeros(n, flat.shape[0], dtype=anchors.dtype, device=anchors.device)
        for b in range(n):
            for c, acfg in enumerate(self.cfg.anchors):
                aidx = (anchor_cls == c).nonzero(as_tuple=True)[0]
                gsel = (gt_boxes[b, :, 7].long() == c + 1).nonzero(as_tuple=True)[0]
                g = gt_boxes[b, gsel]
                if len(g) == 0:
                    continue
                iou = iou_bev_nearest(flat[aidx], g[:, :7])  # (Ka, G)
                best_iou, best_gt = iou.max(1)
                lab = torch.full_like(best_gt, -1)
                lab[best_iou < acfg.unmatched_threshold] = 0
                pos = best_iou >= acfg.matched_threshold
                gt_best = iou.max(0).values
                gt_best = torch.where(gt_best > 0, gt_best, torch.full_like(gt_best, -1))
                forced_a, forced_g = (iou == gt_best[None, :]).nonzero(as_tuple=True)
                best_gt[forced_a] = forced_g
                pos[forced_a] = True
                lab[pos] = c + 1
                labels[b, aidx] = lab
                matched[b, aidx[pos]] = g[best_gt[pos], :7]
                gt_index[b, aidx[pos]] = gsel[best_gt[pos]]
                match_iou[b, aidx[pos]] = iou[pos, best_gt[pos]].to(match_iou.dtype)
        return {"labels": labels, "matched": matched, "gt_index": gt_index, "iou": match_iou}

    def assign_targets_for(self, preds: dict, gt_boxes: torch.Tensor) -> dict:
        return self.assign_targets(self.anchors(preds["feature_size"], gt_boxes.device), gt_boxes)

    @torch.no_grad()
    def quality_targets(self, preds: dict, gt_boxes: torch.Tensor, quality: torch.Tensor, alpha: float,
                        gamma: float, soft_peaks: bool = True, class_norm: bool = False,
                        target: str = "peaks") -> dict:
        """Positive anchors get ``cls_soft = iou_match^alpha * quality^(1-alpha)`` and a box weight
        ``quality^gamma`` (``soft_peaks`` concerns centre heads only; ``class_norm``: box weights
        normalised per class). ``target="iou_branch"``: plain targets, the IoU branch's target of
        each positive anchor ``iou^alpha * quality^(1-alpha)`` instead."""
        t = self.assign_targets_for(preds, gt_boxes)
        pos = t["labels"] > 0
        q = quality.gather(1, t["gt_index"].clamp(min=0))
        if self._quality_in_iou_branch(target):
            return self._iou_branch_targets(t, q, alpha)
        soft = t["iou"].clamp(0, 1).pow(alpha) * q.clamp(1e-3, 1).pow(1 - alpha)
        t["cls_soft"] = torch.where(pos, soft, torch.zeros_like(soft))
        t["box_weight"] = L.normalised_weight(q.clamp(min=1e-3).pow(gamma), pos, t["labels"] if class_norm else None)
        return t

    # --------------------------------------------------------------------- loss
    def loss(self, preds: dict, gt_boxes: torch.Tensor, targets: dict | None = None) -> dict:
        """Training losses. ``targets`` may be given (e.g. by label-assignment distillation)."""
        cfg = self.cfg
        anchors = self.anchors(preds["feature_size"], gt_boxes.device).reshape(-1, 7)
        if targets is None:
            targets = self.assign_targets_for(preds, gt_boxes)
        labels = targets["labels"]
        pos = labels > 0
        normalizer = L.global_normalizer(pos.sum())
        cared = labels >= 0
        # classification: one-hot over classes (soft targets may replace the 1s)
        value = targets.get("cls_soft", pos.to(preds["cls"].dtype))
        onehot = torch.zeros_like(preds["cls"]).scatter_(
            2, (labels - 1).clamp(min=0)[..., None], (value * pos)[..., None].to(preds["cls"].dtype))
        cls_w = cared.to(onehot.dtype)
        if "cls_weight" in targets:
            cls_w = cls_w * targets["cls_weight"]
        loss_cls = (L.sigmoid_focal_loss(preds["cls"], onehot, cfg.focal_alpha, cfg.focal_gamma)
                    * cls_w[..., None]).sum() / normalizer
        out = {"loss_cls": loss_cls * cfg.loss_weights.cls}
        # regression on positives
        box_pred = preds["box"][pos]
        a_pos = anchors[None].expand(labels.shape[0], -1, -1)[pos]
        gt_pos = targets["matched"][pos]
        box_tgt = self.coder.encode(gt_pos, a_pos)
        box_w = targets["box_weight"][pos] if "box_weight" in targets else None
        if not cfg.encode_angle_by_sincos:
            p_enc, t_enc = L.add_sin_difference(box_pred, box_tgt)
        else:
            p_enc, t_enc = box_pred, box_tgt
        cw = box_pred.new_tensor(cfg.code_weights[:p_enc.shape[-1]] + (1.0,) * max(0, p_enc.shape[-1] - len(cfg.code_weights)))
        reg = (L.smooth_l1(p_enc - t_enc, cfg.smooth_l1_beta) * cw).sum(-1)
        if box_w is not None:
            reg = reg * box_w
        out["loss_box"] = reg.sum() / normalizer * cfg.loss_weights.box
        if self.conv_dir is not None:
            dir_t = L.direction_target(gt_pos[:, 6], cfg.dir_offset, cfg.num_dir_bins)
            ce = nn.functional.cross_entropy(preds["dir"][pos], dir_t, reduction="sum")
            out["loss_dir"] = ce / normalizer * cfg.loss_weights.dir
        if self.conv_iou is not None:
            with torch.no_grad():
                dec = self.coder.decode(box_pred.detach(), a_pos)
                dec = self._resolve_direction(dec, preds["dir"][pos].detach() if self.conv_dir is not None else None)
                t_iou = iou_targets(dec, gt_pos)
                if "iou_teacher" in targets:
                    t_iou = blend_iou_target(t_iou, targets["iou_teacher"][pos], targets["iou_alpha"])
            out["loss_iou"] = iou_loss(preds["iou"][pos], t_iou, normalizer) * cfg.loss_weights.iou
        out["num_pos"] = normalizer.detach()
        return out

    # ------------------------------------------------------------------- decode
    def _resolve_direction(self, boxes: torch.Tensor, dir_logits: torch.Tensor | None) -> torch.Tensor:
        if dir_logits is None:
            return boxes
        cfg = self.cfg
        yaw = L.apply_direction(boxes[..., 6], dir_logits.argmax(-1), cfg.dir_offset,
                                cfg.dir_limit_offset, cfg.num_dir_bins)
        return torch.cat([boxes[..., :6], yaw[..., None]], -1)

    def decode(self, preds: dict) -> dict:
        """Dense decoded candidates: boxes (N,K,7), scores (N,K) (sigmoid, best class), labels
        (N,K) (0-based), iou (N,K) predicted quality in [0,1] or None."""
        anchors = self.anchors(preds["feature_size"], preds["box"].device).reshape(1, -1, 7)
        boxes = self.coder.decode(preds["box"], anchors.expand(preds["box"].shape[0], -1, -1))
        boxes = self._resolve_direction(boxes, preds.get("dir"))
        logits, labels = preds["cls"].max(-1)
        iou = torch.sigmoid(preds["iou"]) if "iou" in preds else None
        return {"boxes": boxes, "scores": torch.sigmoid(logits), "labels": labels, "iou": iou,
                "logits": logits, "index": None}

    # ------------------------------------------------------------ reading outputs
    def has_iou_branch(self) -> bool:
        return self.conv_iou is not None

    def class_logit_map(self, preds: dict) -> torch.Tensor:
        n, c = preds["cls"].shape[0], preds["cls"].shape[-1]
        h, w = preds["feature_size"]
        return preds["cls"].view(n, h, w, -1, c).max(3).values.permute(0, 3, 1, 2)

    def class_probs(self, preds: dict) -> tuple[torch.Tensor, int]:
        return torch.sigmoid(preds["cls"]), self.num_anchors

    # ------------------------------------------------------------------ structure
    def prunable_inputs(self) -> list[str]:
        return [n for n in ("conv_cls", "conv_box", "conv_dir", "conv_iou") if getattr(self, n) is not None]

    def output_names(self) -> list[str]:
        names = ["cls", "box"]
        if self.conv_dir is not None:
            names.append("dir")
        if self.conv_iou is not None:
            names.append("iou")
        return names

    def export_attributes(self) -> dict:
        a = self.cfg
        return dict(head_type=self.head_type, code_sincos=int(a.encode_angle_by_sincos),
                    use_dir=int(a.use_direction_classifier), num_dir_bins=a.num_dir_bins, dir_offset=a.dir_offset,
                    dir_limit_offset=a.dir_limit_offset)

    def export_post_inputs(self, feature_size: tuple[int, int]):
        anchors = self.anchors(feature_size, "cpu").reshape(-1, 7).numpy().astype(np.float32)
        k, c = anchors.shape[0], self.num_classes
        shapes = {"cls": [1, k, c], "box": [1, k, self.coder.code_size], "dir": [1, k, self.cfg.num_dir_bins],
                  "iou": [1, k]}
        names = self.output_names()
        inputs = [n if n in names else "" for n in ("cls", "box", "dir", "iou")] + ["anchors"]
        return {n: shapes[n] for n in names}, inputs, {"anchors": anchors}
