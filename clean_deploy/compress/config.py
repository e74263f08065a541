"""Typed configs of the compression stage (distillation, pruning, the whole CLEAN pipeline)."""
from __future__ import annotations

from dataclasses import dataclass, field

from clean_deploy.config import ConfigBase
from clean_deploy.models.config import RedundancyConfig


#: where label-assignment distillation puts the teacher's quality (``DistillConfig.la_target``)
LA_TARGETS = ("peaks", "iou_branch")


@dataclass
class DistillConfig(ConfigBase):
    """CaKD: every term switchable (weight 0 = off) and weighted.

    Student-oriented distillation: ``response`` (masked dense class-response KD), ``feature``
    (masked BEV feature KD through a learned adapter), ``student_oriented`` (the teacher's second
    stage judges the student's own confident boxes; the student's scores there learn that
    judgement). Two-stage-oriented label assignment distillation: ``label_assignment`` (soft
    classification targets and loss weights from the teacher's IoU-guided quality of each GT) and
    optionally confident teacher boxes added as extra targets.
    """

    response: float = 1.0
    feature: float = 0.1
    student_oriented: float = 1.0
    label_assignment: bool = True
    #: soft target of a positive = iou_match^alpha * teacher_quality^(1 - alpha)
    la_alpha: float = 0.5
    #: positives' regression weight = teacher quality^gamma (normalised to mean 1)
    la_box_gamma: float = 1.0
    #: centre heads: soft peak targets (quality focal loss) instead of quality-weighted peaks
    la_soft_peaks: bool = True
    #: teacher quality x its first-stage probability of the GT's class
    la_class_aware: bool = True
    #: regression weights normalised to mean 1 within each class instead of over all objects (the
    #: teacher's quality is lower for small classes, so a batch-wide mean moves box-loss weight from
    #: pedestrians to cars)
    la_class_norm: bool = False
    #: where the teacher's quality goes: ``"peaks"`` (soft classification targets of the positives
    #: and quality-weighted regression, the anchor rule; in heatmap form for centre heads) or
    #: ``"iou_branch"`` (only the IoU-quality branch's target becomes ``iou^alpha *
    #: quality^(1-alpha)``, iou = the student's own box vs its GT; classification and regression
    #: train as without KD: the form of the paper's centre-head code; needs a '+iou' student)
    la_target: str = "peaks"
    add_teacher_boxes: bool = False
    add_score_thresh: float = 0.8
    #: foreground mask: GT boxes and teacher predictions above this score, enlarged by this (m)
    mask_teacher_score: float = 0.3
    mask_enlarge: float = 0.5
    #: per-class weights of the foreground mask (class_names order); background weight
    class_weights: tuple[float, ...] = (1.0, 2.0, 2.0)
    bg_weight: float = 0.02
    #: student-oriented candidates: score threshold, NMS IoU, per-frame cap
    so_score_thresh: float = 0.1
    so_nms_thresh: float = 0.3
    so_max: int = 64

    @classmethod
    def label_assignment_fields(cls) -> tuple[str, ...]:
        """The fields read only when ``label_assignment`` is on (the ``la_*`` ones): a student
        distilled without label assignment trains the same whatever their values."""
        from dataclasses import fields

        return tuple(f.name for f in fields(cls) if f.name.startswith("la_"))

    def __post_init__(self) -> None:
        if self.la_target not in LA_TARGETS:
            raise ValueError(f"la_target must be one of {LA_TARGETS}, got {self.la_target!r}")


@dataclass
class PruneConfig(ConfigBase):
    """What to prune and how much."""

    #: masked (CLEAN) | taylor (first-order) | unmasked | l1 | random
    method: str = "masked"
    #: keep this fraction of the FLOPs (``budget='flops'``) or parameters (``'params'``)
    target: float = 0.3
    budget: str = "flops"
    min_channels: int = 4
    min_ratio: float = 0.1
    calib_frames: int = 8
    calib_batch: int = 4
    seed: int = 0
    #: iterative pruning: reach ``target`` in this many prune -> fine-tune rounds (FLOPs fraction
    #: target^(i/steps) after round i, importance re-scored on the fine-tuned model each round, the
    #: fine-tuning epochs split between the rounds); 1 = one-shot
    steps: int = 1


@dataclass
class CompressConfig(ConfigBase):
    """Settings of the whole pipeline."""

    student: str = "second_fast@0.5x"
    distill_epochs: int = 12
    finetune_epochs: int = 6
    batch_size: int = 4
    lr: float = 0.003
    finetune_lr: float = 0.0015
    num_workers: int = 2
    seed: int = 0
    distill: DistillConfig = field(default_factory=DistillConfig)
    #: the pipeline prunes to half the FLOPs unless told otherwise (``--target-flops``)
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(target=0.5))
    redundancy: RedundancyConfig = field(default_factory=RedundancyConfig)
    eval_split: str = "val"
    latency_frames: int = 20
    bench_threads: int = 2  # CPU threads of the latency/memory measurement
