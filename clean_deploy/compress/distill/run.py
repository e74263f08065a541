"""``clean-deploy distill``: train a one-stage student with CaKD from a trained two-stage teacher."""
from __future__ import annotations

from pathlib import Path

import torch

from clean_deploy.compress.config import DistillConfig
from clean_deploy.compress.distill.cakd import CaKDLoss
from clean_deploy.config import TrainConfig
from clean_deploy.models.config import DetectorConfig
from clean_deploy.models.detector import build_detector
from clean_deploy.models.checkpoint import load_detector
from clean_deploy.train.loop import TrainResult, Trainer


def distill(teacher_ckpt: str | Path, student_cfg: DetectorConfig, data_root: str | Path, run_dir: str | Path,
            train_cfg: TrainConfig, distill_cfg: DistillConfig | None = None, resume: bool = False,
            student_model=None, meta: dict | None = None, progress: bool = True) -> TrainResult:
    """Train ``student_cfg`` (or the given ``student_model``, e.g. a pruned one) with CaKD.

    ``train_cfg.seed`` fixes the student's initial weights (the same ones ``clean-deploy train``
    starts from with that seed, so a plain and a distilled run of one seed are paired) and the
    distillation adapters' initial weights.
    """
    distill_cfg = distill_cfg or DistillConfig()
    teacher, _ = load_detector(teacher_ckpt)
    torch.manual_seed(train_cfg.seed)
    student = student_model if student_model is not None else build_detector(student_cfg)
    torch.manual_seed(train_cfg.seed + 1)
    loss = CaKDLoss(teacher, student, distill_cfg)
    trainer = Trainer(student.cfg, train_cfg, data_root, run_dir, resume=resume, loss_fn=loss, model=student,
                      extra_modules=loss.extra_modules(), progress=progress,
                      meta={**(meta or {}), "teacher": str(teacher_ckpt), "distill_config": distill_cfg.to_dict()})
    loss.teacher.to(trainer.dist.device)
    return trainer.fit()
