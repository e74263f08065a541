"""CenterPoint-style head: per-class gaussian heatmaps and regression of centre offset, z,
log size and (cos, sin) heading at object centres, with the optional IoU-quality branch."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from clean_deploy.models.config import HeadConfig, LossWeights, register_head_config
from clean_deploy.models.heads import losses as L
from clean_deploy.models.heads.base import DenseHead
from clean_deploy.models.heads.iou_quality import blend_iou_target, iou_loss, iou_targets

#: regression channels: offset x/y, z, log l/w/h, cos, sin
REG_CHANNELS = 8


@register_head_config
@dataclass
class CenterHeadConfig(HeadConfig):
    """CenterPoint-style head: class heatmaps + regression of offset, z, log size, (cos, sin)."""

    type: str = "center"
    shared_channels: int = 64
    head_channels: int = 64
    #: gaussian radius: CenterNet's formula with this min overlap, at least ``min_radius`` cells
    gaussian_overlap: float = 0.1
    min_radius: int = 2
    max_objects: int = 128
    loss_weights: LossWeights = field(default_factory=lambda: LossWeights(cls=1.0, box=0.25, dir=0.0, iou=1.0))
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    iou_branch: bool = False
    #: how the heading is learnt. "sincos": (cos, sin) of the heading regressed (CenterPoint).
    #: "axis": (cos 2t, sin 2t) of the box axis regressed (pi-periodic, so a box whose front and
    #: back look alike has one target instead of two opposite ones) plus a forward/backward logit
    #: (its loss weight: ``loss_weights.dir``). Either way the head's ``reg`` output carries (cos,
    #: sin) of the heading, so decoding, export and the deployed runtimes are the same.
    heading: str = "sincos"
    #: heatmap peaks decoded per frame (Python decode, the exported node's ``top_k``, the C++ decoder)
    top_k: int = 500

    def scaled(self, mult: float) -> "CenterHeadConfig":
        return self.replace(shared_channels=max(16, int(self.shared_channels * mult)),
                            head_channels=max(16, int(self.head_channels * mult)))


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """CenterNet's radius so that a box shifted by it keeps ``min_overlap`` IoU (element-wise)."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


HEADINGS = ("sincos", "axis")


def heading_from_axis(axis: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """(cos t, sin t) of the heading t from the regressed axis (cos 2t, sin 2t) (channels 0 and 1 of
    dim 1, any scale) and the forward/backward logit (same shape, one channel).

    The axis gives t up to a half turn; its representative a is taken in (-3pi/4, pi/4] and turned
    by pi where the logit is negative. The window's cut (pi/4, OpenPCDet's ``dir_offset``) lies
    between the axes that road traffic takes (along and across the road), so the forward/backward
    label does not flip on the noise of a car seen straight along or across. Computed as the half
    angle b = a + pi/4 in (-pi/2, pi/2] of (cos 2b, sin 2b) = (-sin 2t, cos 2t), then turned back:
    elementwise ops only (Sqrt, Where, Mul, Add), so it exports to ONNX as it is."""
    c2, s2 = axis[:, 0:1], axis[:, 1:2]
    r = torch.sqrt(c2 * c2 + s2 * s2).clamp(min=1e-6)
    cos2b, sin2b = -s2 / r, c2 / r
    cos_b = torch.sqrt(((1 + cos2b) * 0.5).clamp(min=0.0))
    sin_b = torch.sqrt(((1 - cos2b) * 0.5).clamp(min=0.0)) * torch.where(sin2b >= 0, 1.0, -1.0)
    k = math.sqrt(0.5)  # a = b - pi/4
    cos_a, sin_a = (cos_b + sin_b) * k, (sin_b - cos_b) * k
    sign = torch.where(direction >= 0, 1.0, -1.0)
    return torch.cat([cos_a * sign, sin_a * sign], 1)


def _branch(c_in: int, c_mid: int, c_out: int, bias_init: float | None = None) -> nn.Sequential:
    out = nn.Conv2d(c_mid, c_out, 1)
    if bias_init is not None:
        nn.init.constant_(out.bias, bias_init)
    return nn.Sequential(nn.Conv2d(c_in, c_mid, 3, padding=1, bias=False), nn.BatchNorm2d(c_mid), nn.ReLU(), out)


class CenterHead(DenseHead):
    """Single multi-class CenterPoint head at the BEV backbone's output resolution."""

    head_type = "center"

    @classmethod
    def from_config(cls, head_cfg: CenterHeadConfig, in_channels: int, det_cfg, feature_stride: float) -> "CenterHead":
        return cls(head_cfg, in_channels, det_cfg.class_names, det_cfg.point_cloud_range, det_cfg.voxel_size,
                   feature_stride)

    def __init__(self, cfg: CenterHeadConfig, in_channels: int, class_names, point_cloud_range,
                 voxel_size, feature_stride: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = len(class_names)
        self.point_cloud_range = tuple(point_cloud_range)
        self.voxel_size = tuple(voxel_size)
        self.feature_stride = float(feature_stride)
        self.shared = nn.Sequential(nn.Conv2d(in_channels, cfg.shared_channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(cfg.shared_channels), nn.ReLU())
        c, m = cfg.shared_channels, cfg.head_channels
        self.hm = _branch(c, m, self.num_classes, bias_init=-2.19)
        self.reg = _branch(c, m, REG_CHANNELS)
        self.iou = _branch(c, m, 1) if cfg.iou_branch else None
        if cfg.heading not in HEADINGS:
            raise ValueError(f"dense_head.heading: {cfg.heading!r} is not one of {', '.join(HEADINGS)}")
        self.dir = _branch(c, m, 1) if cfg.heading == "axis" else None
        if self.dir is not None and cfg.loss_weights.dir <= 0:
            raise ValueError("dense_head: heading 'axis' needs loss_weights.dir > 0 (the forward/backward logit "
                             "is learnt from it; '+axis' sets 0.2)")

    def forward(self, x: torch.Tensor) -> dict:
        x = self.shared(x)
        out = {"hm": self.hm(x), "reg": self.reg(x), "feature_size": tuple(x.shape[-2:])}
        if self.dir is not None:  # learnt as axis + direction, handed on as (cos, sin) of the heading
            raw, d = out["reg"], self.dir(x)
            out["reg_raw"], out["dir"] = raw, d[:, 0]
            out["reg"] = torch.cat([raw[:, :6], heading_from_axis(raw[:, 6:8], d)], 1)
        if self.iou is not None:
            out["iou"] = self.iou(x)[:, 0]
        return out

    # ------------------------------------------------------------------ targets
    def cell_size(self) -> tuple[float, float]:
        """(x, y) metres of one cell of the predicted map."""
        return self.voxel_size[0] * self.feature_stride, self.voxel_size[1] * self.feature_stride

    @torch.no_grad()
    def assign_targets(self, gt_boxes: torch.Tensor, feature_size: tuple[int, int]) -> dict:
        """Gaussian heatmaps (N,C,H,W), per-object flat index/mask/regression targets (N,M,...)."""
        n, m = gt_boxes.shape[:2]
        h, w = feature_size
        dev = gt_boxes.device
        cx, cy = self.cell_size()
        x0, y0 = self.point_cloud_range[0], self.point_cloud_range[1]
        hm = torch.zeros(n, self.num_classes, h, w, device=dev)
        valid = gt_boxes[..., 7] > 0
        fx = (gt_boxes[..., 0] - x0) / cx
        fy = (gt_boxes[..., 1] - y0) / cy
        ix, iy = fx.floor().long(), fy.floor().long()
        inside = valid & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        radius = gaussian_radius(gt_boxes[..., 3] / cx, gt_boxes[..., 4] / cy, self.cfg.gaussian_overlap)
        radius = radius.floor().clamp(min=self.cfg.min_radius)
        sigma = (2 * radius + 1) / 6
        gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
        for b in range(n):
            idx = inside[b].nonzero(as_tuple=True)[0]
            if len(idx) == 0:
                continue
            dx = gx[None] - ix[b, idx, None, None]
            dy = gy[None] - iy[b, idx, None, None]
            r = radius[b, idx, None, None]
            g = torch.exp(-(dx ** 2 + dy ** 2).float() / (2 * sigma[b, idx, None, None] ** 2))
            g = torch.where((dx.abs() <= r) & (dy.abs() <= r), g, torch.zeros_like(g))
            cls = gt_boxes[b, idx, 7].long() - 1
            hm[b].view(self.num_classes, -1).scatter_reduce_(
                0, cls[:, None].expand(-1, h * w), g.view(len(idx), -1), reduce="amax")
        ind = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1))
        reg = torch.stack([fx - ix, fy - iy, gt_boxes[..., 2],
                           torch.log(gt_boxes[..., 3].clamp(min=1e-3)), torch.log(gt_boxes[..., 4].clamp(min=1e-3)),
                           torch.log(gt_boxes[..., 5].clamp(min=1e-3)),
                           torch.cos(gt_boxes[..., 6]), torch.sin(gt_boxes[..., 6])], -1)
        return {"hm": hm, "ind": ind, "mask": inside, "reg": reg, "boxes": gt_boxes[..., :7],
                "classes": gt_boxes[..., 7].long()}

    def assign_targets_for(self, preds: dict, gt_boxes: torch.Tensor) -> dict:
        return self.assign_targets(gt_boxes, preds["feature_size"])

    @torch.no_grad()
    def quality_targets(self, preds: dict, gt_boxes: torch.Tensor, quality: torch.Tensor, alpha: float,
                        gamma: float, soft_peaks: bool = True, class_norm: bool = False,
                        target: str = "peaks") -> dict:
        """The anchor rule in heatmap form: an object's peak has the soft target
        ``iou_match^alpha * quality^(1 - alpha)`` with iou_match = 1 (the peak is the object's own
        centre cell), learnt with the quality focal loss; regression weighted by ``quality^gamma``.
        ``soft_peaks=False``: hard peaks weighted by the quality instead. ``class_norm``: the weights
        normalised to mean 1 within each class (the batch's mean otherwise). ``target="iou_branch"``:
        none of that; the IoU branch's target at each object's centre becomes
        ``iou^alpha * quality^(1-alpha)`` instead."""
        t = self.assign_targets_for(preds, gt_boxes)
        if self._quality_in_iou_branch(target):
            return self._iou_branch_targets(t, quality, alpha)
        t["obj_weight"] = L.normalised_weight(quality.clamp(min=1e-3).pow(gamma), t["mask"],
                                              t["classes"] if class_norm else None)
        if soft_peaks:
            t["peak_target"] = quality.clamp(1e-3, 1).pow(1 - alpha)
        return t

    # --------------------------------------------------------------------- loss
    def loss(self, preds: dict, gt_boxes: torch.Tensor, targets: dict | None = None) -> dict:
        cfg = self.cfg
        if targets is None:
            targets = self.assign_targets_for(preds, gt_boxes)
        num_pos = L.global_normalizer(targets["hm"].eq(1).sum())
        mask = targets["mask"]
        n, _, h, w = preds["reg"].shape
        # optional per-object weights (label-assignment distillation): peaks and regression
        obj_w = targets.get("obj_weight")
        pos_w = None
        if obj_w is not None:
            pos_w = torch.ones_like(targets["hm"]).view(n, self.num_classes, h * w)
            cls = (targets["classes"] - 1).clamp(min=0)
            pos_w.view(n, -1).scatter_(1, cls * h * w + targets["ind"], torch.where(mask, obj_w, torch.ones_like(obj_w)))
            pos_w = pos_w.view_as(targets["hm"])
        # optional soft peak targets (label-assignment distillation: the teacher's quality of each object)
        peak_value = None
        if targets.get("peak_target") is not None:
            pos_w = None  # the soft target carries the quality; obj_weight then weights regression only
            peak_value = torch.ones_like(targets["hm"]).view(n, -1)
            cls = (targets["classes"] - 1).clamp(min=0)
            flat = (cls * h * w + targets["ind"])[mask]
            batch_of = torch.arange(n, device=flat.device)[:, None].expand_as(mask)[mask]
            peak_value[batch_of, flat] = targets["peak_target"][mask].to(peak_value.dtype)
            peak_value = peak_value.view_as(targets["hm"])
        out = {"loss_cls": L.centernet_focal_loss(preds["hm"], targets["hm"], num_pos, pos_weight=pos_w,
                                                  peak_value=peak_value) * cfg.loss_weights.cls}
        n_obj = L.global_normalizer(mask.sum())
        gather = targets["ind"][:, None, :].expand(-1, REG_CHANNELS, -1)
        reg = preds["reg"].view(n, REG_CHANNELS, h * w).gather(2, gather).permute(0, 2, 1)  # (N,M,8)
        cw = reg.new_tensor(cfg.code_weights)
        reg_mask = mask.to(reg.dtype) * (obj_w if obj_w is not None else 1.0)
        if self.dir is None:
            l1 = ((reg - targets["reg"]).abs() * cw * reg_mask[..., None]).sum() / n_obj
        else:
            # regress the axis (cos 2t, sin 2t); the direction is a binary choice on top of it
            raw = preds["reg_raw"].view(n, REG_CHANNELS, h * w).gather(2, gather).permute(0, 2, 1)
            c, s_ = targets["reg"][..., 6], targets["reg"][..., 7]
            axis_t = torch.stack([c * c - s_ * s_, 2 * c * s_], -1)
            tgt = torch.cat([targets["reg"][..., :6], axis_t], -1)
            l1 = ((raw - tgt).abs() * cw * reg_mask[..., None]).sum() / n_obj
            # forward = the heading points along the half angle that heading_from_axis recovers
            half = heading_from_axis(axis_t.permute(0, 2, 1), torch.ones_like(axis_t[..., :1]).permute(0, 2, 1))
            forward = ((half[:, 0] * c + half[:, 1] * s_) > 0).to(raw.dtype)
            logit = preds["dir"].reshape(n, h * w).gather(1, targets["ind"])
            bce = nn.functional.binary_cross_entropy_with_logits(logit, forward, reduction="none")
            out["loss_dir"] = (bce * reg_mask).sum() / n_obj * cfg.loss_weights.dir
        out["loss_box"] = l1 * cfg.loss_weights.box
        if self.iou is not None:
            with torch.no_grad():
                boxes = self._decode_reg(reg.detach(), targets["ind"], w)
                t_iou = iou_targets(boxes[mask], targets["boxes"][mask])
                if "iou_teacher" in targets:
                    t_iou = blend_iou_target(t_iou, targets["iou_teacher"][mask], targets["iou_alpha"])
            logits = preds["iou"].view(n, h * w).gather(1, targets["ind"])[mask]
            out["loss_iou"] = iou_loss(logits, t_iou, n_obj) * cfg.loss_weights.iou
        out["num_pos"] = n_obj.detach()
        return out

    # ------------------------------------------------------------------- decode
    def _decode_reg(self, reg: torch.Tensor, ind: torch.Tensor, w: int) -> torch.Tensor:
        """Regression values (..., 8) at flat cell indices -> LiDAR boxes (..., 7)."""
        cx, cy = self.cell_size()
        xs = (ind % w).to(reg.dtype) + reg[..., 0]
        ys = ind.div(w, rounding_mode="floor").to(reg.dtype) + reg[..., 1]
        x = xs * cx + self.point_cloud_range[0]
        y = ys * cy + self.point_cloud_range[1]
        dims = torch.exp(reg[..., 3:6].clamp(max=5.0))
        yaw = torch.atan2(reg[..., 7], reg[..., 6])
        return torch.cat([x[..., None], y[..., None], reg[..., 2:3], dims, yaw[..., None]], -1)

    def decode(self, preds: dict, top_k: int | None = None) -> dict:
        """Top-K heatmap peaks (3x3 max-pool suppression) -> boxes (N,K,7), scores, labels, iou.
        ``top_k``: the config's unless given."""
        top_k = self.cfg.top_k if top_k is None else top_k
        hm = torch.sigmoid(preds["hm"])
        n, c, h, w = hm.shape
        peak = nn.functional.max_pool2d(hm, 3, stride=1, padding=1)
        hm = hm * (peak == hm).to(hm.dtype)
        k = min(top_k, c * h * w)
        # stable descending sort: equal scores keep the lower flat index first (the export op's rule)
        scores, flat = hm.view(n, -1).sort(dim=1, descending=True, stable=True)
        scores, flat = scores[:, :k], flat[:, :k]
        labels = flat.div(h * w, rounding_mode="floor")
        ind = flat % (h * w)
        reg = preds["reg"].view(n, REG_CHANNELS, h * w).gather(2, ind[:, None, :].expand(-1, REG_CHANNELS, -1))
        boxes = self._decode_reg(reg.permute(0, 2, 1), ind, w)
        iou = torch.sigmoid(preds["iou"].view(n, h * w).gather(1, ind)) if "iou" in preds else None
        logits = preds["hm"].reshape(n, -1).gather(1, flat)
        return {"boxes": boxes, "scores": scores, "labels": labels, "iou": iou, "logits": logits, "index": flat}

    # ------------------------------------------------------------ reading outputs
    def has_iou_branch(self) -> bool:
        return self.iou is not None

    def class_logit_map(self, preds: dict) -> torch.Tensor:
        return preds["hm"]

    def class_probs(self, preds: dict) -> tuple[torch.Tensor, int]:
        n, c, h, w = preds["hm"].shape
        return torch.sigmoid(preds["hm"]).permute(0, 2, 3, 1).reshape(n, h * w, c), 1

    # ------------------------------------------------------------------ structure
    def prunable_inputs(self) -> list[str]:
        return ["shared.0"]

    def output_names(self) -> list[str]:
        return ["hm", "reg"] + (["iou"] if self.iou is not None else [])

    def export_attributes(self) -> dict:
        return dict(head_type=self.head_type, top_k=int(self.cfg.top_k),
                    pc_range=[float(v) for v in self.point_cloud_range], cell_size=list(self.cell_size()))

    def export_post_inputs(self, feature_size: tuple[int, int]):
        h, w = feature_size
        shapes = {"hm": [1, self.num_classes, h, w], "reg": [1, REG_CHANNELS, h, w], "iou": [1, h, w]}
        names = self.output_names()
        return {n: shapes[n] for n in names}, ["hm", "reg", "", "iou" if "iou" in names else "", ""], {}
