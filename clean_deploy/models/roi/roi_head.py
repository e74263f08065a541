"""Voxel R-CNN-like RoI head: pools multi-scale sparse features on RoI grids, predicts an
IoU-guided confidence and a box refinement; losses and decoding of refined boxes."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from clean_deploy.geometry.boxes import box_corners_loss
from clean_deploy.geometry.coder import ResidualCoder
from clean_deploy.models.config import RoIHeadConfig
from clean_deploy.models.heads.losses import global_normalizer, smooth_l1
from clean_deploy.models.roi.grid_pool import VoxelQueryPool, roi_grid_points
from clean_deploy.models.roi.proposals import select_proposals
from clean_deploy.models.roi.targets import (decode_roi_boxes, encode_roi_targets, iou_guided_cls_target,
                                             sample_rois)


def _mlp(c_in: int, widths, dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(c_in, w, bias=False), nn.BatchNorm1d(w), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        c_in = w
    return nn.Sequential(*layers), c_in


class RoIHead(nn.Module):
    """Second stage of the teacher.

    ``scales``: for each pooled layer name, (channels, voxel size in metres (x,y,z)).
    """

    def __init__(self, cfg: RoIHeadConfig, scales: dict[str, tuple[int, tuple[float, float, float]]],
                 point_cloud_range) -> None:
        super().__init__()
        self.cfg = cfg
        self.coder = ResidualCoder()
        self.pools = nn.ModuleDict({
            name: VoxelQueryPool(c, cfg.pool_channels, vs, point_cloud_range[:3], cfg.query_range)
            for name, (c, vs) in scales.items() if name in cfg.pool_layers})
        missing = set(cfg.pool_layers) - set(self.pools)
        if missing:
            raise ValueError(f"roi_head.pool_layers {sorted(missing)} not produced by the backbone {sorted(scales)}")
        c_in = cfg.grid_size ** 3 * cfg.pool_channels * len(self.pools)
        self.shared, c = _mlp(c_in, cfg.shared_fc, cfg.dropout)
        cls_mlp, c_cls = _mlp(c, cfg.head_fc, cfg.dropout)
        reg_mlp, c_reg = _mlp(c, cfg.head_fc, cfg.dropout)
        self.cls = nn.Sequential(cls_mlp, nn.Linear(c_cls, 1))
        self.reg = nn.Sequential(reg_mlp, nn.Linear(c_reg, self.coder.code_size))
        nn.init.normal_(self.reg[-1].weight, std=0.001)
        nn.init.zeros_(self.reg[-1].bias)
        self._gen = torch.Generator().manual_seed(0)

    def reseed(self, seed: int) -> None:
        """Seed the RoI sampler (the trainer calls this so resumed runs sample identically)."""
        self._gen.manual_seed(seed)

    def sampler_state(self) -> torch.Tensor:
        """The RoI sampler's generator state (saved with a resumable run)."""
        return self._gen.get_state()

    def set_sampler_state(self, state: torch.Tensor) -> None:
        self._gen.set_state(state)

    def proposals(self, decoded: dict) -> dict:
        c = self.cfg
        if self.training:
            return select_proposals(decoded, c.train_nms_pre, c.train_nms_post, c.proposal_nms_thresh)
        return select_proposals(decoded, c.test_nms_pre, c.test_nms_post, c.proposal_nms_thresh)

    def forward(self, sparse_feats: dict, decoded: dict, gt_boxes: torch.Tensor | None = None) -> dict:
        """Proposals from the dense head's decoded output -> refined boxes and confidences.

        In training (``gt_boxes`` given) RoIs are sampled against GT and targets returned too.
        """
        props = self.proposals(decoded)
        n = props["rois"].shape[0]
        if self.training and gt_boxes is not None:
            tgt = sample_rois(self.cfg, props, gt_boxes, self._gen)
            rois, labels = tgt["rois"], tgt["roi_labels"]
            valid = torch.ones(rois.shape[:2], dtype=torch.bool, device=rois.device)
        else:
            tgt = None
            rois, labels, valid = props["rois"], props["roi_labels"], props["valid"]
        cls, reg = self.head_forward(sparse_feats, rois)
        out = {"rois": rois, "roi_labels": labels, "valid": valid, "cls": cls, "reg": reg,
               "roi_scores": props["roi_scores"] if tgt is None else None}
        if tgt is not None:
            out["targets"] = tgt
        return out

    def head_forward(self, sparse_feats: dict, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features on the grids of ``rois`` (N,R,7) and run the MLP: class logits (N,R) and
        refinement residuals (N,R,code)."""
        n, r = rois.shape[:2]
        batch_idx = torch.arange(n, device=rois.device).repeat_interleave(r)
        cls, reg = self._head_forward_flat(sparse_feats, rois.reshape(n * r, 7), batch_idx)
        return cls.view(n, r), reg.view(n, r, -1)

    def _head_forward_flat(self, sparse_feats: dict, rois: torch.Tensor,
                           batch_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoIs (K,7) of frames ``batch_idx`` (K,) -> class logits (K,) and residuals (K,code). Each
        RoI's result depends on that RoI alone (the pooling is per grid point; BN in eval mode)."""
        pts = roi_grid_points(rois, self.cfg.grid_size)
        pooled = [pool(sparse_feats[name], pts, batch_idx) for name, pool in self.pools.items()]
        x = self.shared(torch.cat(pooled, -1).reshape(rois.shape[0], -1))
        return self.cls(x).view(-1), self.reg(x)

    @torch.no_grad()
    def score_boxes(self, sparse_feats: dict, boxes: torch.Tensor,
                    valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The second stage's judgement of arbitrary boxes (N,R,7) used as RoIs: IoU-guided
        confidence (N,R) in [0,1] and refined boxes (N,R,7). Used by distillation.

        ``valid`` (N,R) bool: only those boxes go through the second stage (the padding rows of a
        batch of GT or candidate lists cost nothing); the others get confidence 0 and their box back
        unrefined. Call it in eval mode (a frozen teacher): each box's result is then its own."""
        n, r = boxes.shape[:2]
        boxes = boxes[..., :7]
        conf, refined = boxes.new_zeros(n, r), boxes.clone()
        if valid is None:
            valid = torch.ones(n, r, dtype=torch.bool, device=boxes.device)
        elif valid.shape != (n, r):
            raise ValueError(f"score_boxes: valid must be (N,R) = {(n, r)}, got {tuple(valid.shape)}")
        bi, ri = valid.nonzero(as_tuple=True)
        if len(bi) == 0:
            return conf, refined
        flat = boxes[bi, ri]
        cls, reg = self._head_forward_flat(sparse_feats, flat, bi)
        conf[bi, ri] = torch.sigmoid(cls)
        refined[bi, ri] = decode_roi_boxes(self.coder, flat, reg).to(refined.dtype)
        return conf, refined

    def loss(self, out: dict) -> dict:
        cfg, tgt = self.cfg, out["targets"]
        iou = tgt["iou"]
        cls_t = iou_guided_cls_target(cfg, iou)
        n_rois = global_normalizer(torch.tensor(float(iou.numel()), device=iou.device))
        loss_cls = F.binary_cross_entropy_with_logits(out["cls"], cls_t, reduction="sum") / n_rois
        fg = iou > cfg.reg_fg_thresh
        n_fg = global_normalizer(fg.sum())
        rois, reg = out["rois"][fg], out["reg"][fg]
        gt = tgt["gt_of_rois"][fg]
        reg_t = encode_roi_targets(self.coder, rois, gt)
        loss_reg = smooth_l1(reg - reg_t, 1.0 / 9.0).sum() / n_fg
        refined = decode_roi_boxes(self.coder, rois, reg)
        loss_corner = box_corners_loss(refined, gt).sum() / n_fg
        w = cfg.loss_weights
        return {"loss_rcnn_cls": loss_cls * w.cls, "loss_rcnn_reg": loss_reg * w.box,
                "loss_rcnn_corner": loss_corner * cfg.corner_weight}

    def decode(self, out: dict) -> dict:
        """Refined boxes (N,R,7), IoU-guided scores (N,R), labels (N,R), valid mask (N,R)."""
        n, r = out["cls"].shape
        boxes = decode_roi_boxes(self.coder, out["rois"].reshape(n * r, 7), out["reg"].reshape(n * r, -1))
        return {"boxes": boxes.view(n, r, 7), "scores": torch.sigmoid(out["cls"]),
                "labels": out["roi_labels"], "valid": out["valid"], "iou": None}
