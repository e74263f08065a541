"""The dense-head contract: everything training, distillation, pruning, export and the C++
post-processing need to know about a one-stage head, asked of the head instead of guessed from its
type, its attributes or the keys of its outputs.

A head turns the BEV backbone's map into a dict of raw tensors (``forward``; it always carries
``feature_size``, the (H, W) of the map it predicts on) and implements the methods below. Heads are
registered by name in :mod:`clean_deploy.models.heads` (the name is also the exported
post-processing node's ``head_type``).
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


class DenseHead(nn.Module, abc.ABC):
    """Interface of a dense (one-stage) detection head."""

    #: registry name and the ``head_type`` attribute of the exported post-processing node
    head_type: ClassVar[str] = ""
    num_classes: int

    @classmethod
    @abc.abstractmethod
    def from_config(cls, head_cfg: Any, in_channels: int, det_cfg: Any, feature_stride: float) -> "DenseHead":
        """The head for its own config section, the BEV map's channels, the detector's config
        (classes, range, voxel size) and the map's stride in voxels."""

    # ------------------------------------------------------------------ training
    @abc.abstractmethod
    def assign_targets_for(self, preds: dict, gt_boxes: torch.Tensor) -> dict:
        """Plain training targets of raw outputs ``preds`` for GT (N,M,8) (class 1-based, 0 = padding)."""

    @abc.abstractmethod
    def loss(self, preds: dict, gt_boxes: torch.Tensor, targets: dict | None = None) -> dict:
        """Named losses (keys ``loss_*``) and ``num_pos``; ``targets`` from :meth:`assign_targets_for`
        or :meth:`quality_targets` (``None``: plain assignment)."""

    @abc.abstractmethod
    def quality_targets(self, preds: dict, gt_boxes: torch.Tensor, quality: torch.Tensor, alpha: float,
                        gamma: float, soft_peaks: bool = True, class_norm: bool = False,
                        target: str = "peaks") -> dict:
        """Targets with a teacher's per-GT quality (N,M) folded in (two-stage-oriented label
        assignment). ``target="peaks"``: soft classification targets ``iou_match^alpha *
        quality^(1-alpha)`` of the positives and regression weights ``quality^gamma`` (normalised
        to mean 1 over the batch's positives; ``class_norm``: to mean 1 within each class).
        ``target="iou_branch"``: the plain targets, except that the IoU-quality branch learns
        ``iou^alpha * quality^(1-alpha)`` at the positives (iou: the student's decoded box against
        its GT), :meth:`_iou_branch_targets`."""

    @staticmethod
    def _quality_in_iou_branch(target: str) -> bool:
        """Whether ``quality_targets``' ``target`` puts the quality in the IoU branch (``"iou_branch"``)
        rather than in the classification targets and regression weights (``"peaks"``)."""
        if target not in ("peaks", "iou_branch"):
            raise ValueError(f"label-assignment target must be 'peaks' or 'iou_branch', got {target!r}")
        return target == "iou_branch"

    def _iou_branch_targets(self, t: dict, quality: torch.Tensor, alpha: float) -> dict:
        """``t`` (plain targets) with the teacher's factor ``quality^(1-alpha)`` per target row
        (``iou_teacher``) and ``alpha`` (``iou_alpha``) for the loss's IoU-branch target."""
        if not self.has_iou_branch():
            raise ValueError("label-assignment target 'iou_branch' needs a head with an IoU-quality branch "
                             "(a '+iou' student)")
        t["iou_teacher"] = quality.clamp(1e-3, 1).pow(1 - alpha)
        t["iou_alpha"] = float(alpha)
        return t

    @abc.abstractmethod
    def has_iou_branch(self) -> bool:
        """Whether the head predicts an IoU quality per box (the '+iou' models)."""

    # ------------------------------------------------------------------ reading outputs
    @abc.abstractmethod
    def decode(self, preds: dict) -> dict:
        """Candidates before NMS: boxes (N,K,7), scores (N,K), labels (N,K) 0-based, iou (N,K) or
        None, logits (N,K), index (N,K) flat class-major cell index or None."""

    @abc.abstractmethod
    def class_logit_map(self, preds: dict) -> torch.Tensor:
        """(N, C, H, W) class logits per BEV cell (anchor heads: the best anchor of the cell)."""

    @abc.abstractmethod
    def class_probs(self, preds: dict) -> tuple[torch.Tensor, int]:
        """(N, L, C) class probabilities of every prediction location and the locations per BEV cell
        (cell-major: location ``l`` lies in cell ``l // per_cell``)."""

    # ------------------------------------------------------------------ structure
    @abc.abstractmethod
    def prunable_inputs(self) -> list[str]:
        """Module paths (relative to the head) of the layers that read the BEV map's channels."""

    @abc.abstractmethod
    def output_names(self) -> list[str]:
        """The raw outputs the exported graph carries, in order (keys of ``forward``'s dict)."""

    @abc.abstractmethod
    def export_attributes(self) -> dict:
        """Head attributes of the exported decode + redundancy-elimination node (``head_type`` and
        what the C++ decoder needs; see docs/custom_ops.md)."""

    @abc.abstractmethod
    def export_post_inputs(self, feature_size: tuple[int, int]) -> tuple[dict[str, list[int]], list[str],
                                                                          dict[str, np.ndarray]]:
        """For the exported post-processing node: the shape of each raw output (batch 1), the
        node's input list (``""`` for an absent optional input) and constant inputs (name -> array)."""
