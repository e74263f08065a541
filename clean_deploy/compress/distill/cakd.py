"""The CaKD training loss: the student's own detection loss (with distilled label assignment)
plus masked response, masked feature and student-oriented distillation terms from a frozen
two-stage teacher. Used as the pluggable ``loss_fn`` of the training loop."""
from __future__ import annotations

import torch
from torch import nn

from clean_deploy.compress.config import DistillConfig
from clean_deploy.compress.distill.feature_kd import FeatureAdapter, masked_feature_loss
from clean_deploy.compress.distill.label_assignment import (add_teacher_boxes, distilled_targets,
                                                            teacher_gt_quality)
from clean_deploy.compress.distill.masks import foreground_mask
from clean_deploy.compress.distill.response_kd import class_logit_map, masked_response_loss
from clean_deploy.compress.distill.student_oriented import student_oriented_loss
from clean_deploy.data.voxelize import Voxelizer
from clean_deploy.models.detector import Detector
from clean_deploy.models.fold import frozen_for_inference
from clean_deploy.models.sparse import shared_rulebooks


def _same_voxels(a, b) -> bool:
    return (tuple(a.voxel_size) == tuple(b.voxel_size) and tuple(a.point_cloud_range) == tuple(b.point_cloud_range)
            and a.max_points_per_voxel == b.max_points_per_voxel)


class CaKDLoss:
    """``loss(student_model, batch) -> (total, parts)`` with a frozen teacher."""

    def __init__(self, teacher: Detector, student: Detector, cfg: DistillConfig) -> None:
        if not teacher.is_two_stage:
            raise ValueError("CaKD needs a two-stage teacher (a detector with a RoI head)")
        if tuple(teacher.cfg.class_names) != tuple(student.cfg.class_names):
            raise ValueError(f"teacher classes {teacher.cfg.class_names} != student classes {student.cfg.class_names}")
        # a frozen copy, BN folded: the same predictions to float rounding, one pass less per map
        self.teacher = frozen_for_inference(teacher)
        self.cfg = cfg
        if cfg.label_assignment and cfg.la_target == "iou_branch" and not student.dense_head.has_iou_branch():
            raise ValueError(f"DistillConfig.la_target 'iou_branch' needs a student with an IoU-quality branch "
                             f"(a '+iou' model); {student.cfg.name!r} has none")
        self.adapter = (FeatureAdapter(student.backbone2d.out_channels, teacher.backbone2d.out_channels)
                        if cfg.feature > 0 else None)
        self._teacher_voxelizer = None
        if not _same_voxels(teacher.cfg, student.cfg):
            t = teacher.cfg
            self._teacher_voxelizer = Voxelizer.from_config(t, training=False)

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"kd_adapter": self.adapter} if self.adapter is not None else {}

    def _teacher_batch(self, batch: dict) -> dict:
        """The batch voxelised for the teacher (re-voxelised from the points when grids differ)."""
        if self._teacher_voxelizer is None:
            return batch
        pts = batch["points"]
        vox, coords, nums = [], [], []
        for b in range(int(batch["batch_size"])):
            v, c, n = self._teacher_voxelizer(pts[pts[:, 0] == b, 1:].cpu().numpy())
            vox.append(torch.from_numpy(v))
            nums.append(torch.from_numpy(n))
            coords.append(torch.cat([torch.full((len(c), 1), b, dtype=torch.int32), torch.from_numpy(c)], 1))
        dev = pts.device
        return {**batch, "voxels": torch.cat(vox).to(dev), "voxel_coords": torch.cat(coords).to(dev),
                "voxel_num_points": torch.cat(nums).to(dev)}

    def __call__(self, model: nn.Module, batch: dict):
        cfg = self.cfg
        core = model.module if hasattr(model, "module") else model
        with torch.no_grad():
            t_out = self.teacher(self._teacher_batch(batch))
            need_dets = cfg.add_teacher_boxes or cfg.response > 0 or cfg.feature > 0
            t_dets = self.teacher.predict(t_out) if need_dets else None
        if cfg.add_teacher_boxes:
            batch = {**batch, "gt_boxes": add_teacher_boxes(batch["gt_boxes"], t_dets, cfg.add_score_thresh)}
        if self._teacher_voxelizer is None and t_out.get("sparse"):
            # same voxels: the student's sparse convs reuse the teacher's rulebooks where layers agree
            batch = {**batch, "rulebooks": shared_rulebooks(next(iter(t_out["sparse"].values())))}
        s_out = model(batch)
        targets = None
        if cfg.label_assignment:
            q = teacher_gt_quality(self.teacher, t_out, batch["gt_boxes"], class_aware=cfg.la_class_aware)
            targets = distilled_targets(core.dense_head, s_out["dense"], batch["gt_boxes"], q, cfg.la_alpha,
                                        cfg.la_box_gamma, soft_peaks=cfg.la_soft_peaks, class_norm=cfg.la_class_norm,
                                        target=cfg.la_target)
        total, parts = core.loss(s_out, batch, targets)
        if cfg.response > 0 or cfg.feature > 0:
            t_feat = t_out["spatial_features_2d"]
            size = tuple(t_feat.shape[-2:])
            mask = foreground_mask(batch["gt_boxes"], t_dets, core.cfg.point_cloud_range, size, cfg.class_weights,
                                   cfg.bg_weight, cfg.mask_enlarge, cfg.mask_teacher_score)
            if cfg.feature > 0:
                fmt = (torch.channels_last if not t_feat.is_contiguous()
                       and t_feat.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
                lf = masked_feature_loss(self.adapter(s_out["spatial_features_2d"], size, fmt), t_feat, mask)
                total = total + cfg.feature * lf
                parts["kd_feature"] = float(lf.detach())
            if cfg.response > 0:
                lr = masked_response_loss(class_logit_map(core.dense_head, s_out["dense"]),
                                          class_logit_map(self.teacher.dense_head, t_out["dense"]), mask)
                total = total + cfg.response * lr
                parts["kd_response"] = float(lr.detach())
        if cfg.student_oriented > 0:
            decoded = core.dense_head.decode(s_out["dense"])
            ls = student_oriented_loss(decoded, self.teacher, t_out, cfg.so_score_thresh, cfg.so_nms_thresh, cfg.so_max)
            total = total + cfg.student_oriented * ls
            parts["kd_student_oriented"] = float(ls.detach())
        return total, parts
