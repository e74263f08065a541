"""``clean-deploy distill | prune | compress``: thin wrappers over :mod:`clean_deploy.compress`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clean_deploy.compress.config import CompressConfig
from clean_deploy.config import TrainConfig

# option defaults: the library's, stated once (the CLEAN pipeline's settings; distill and prune are its stages)
_C = CompressConfig()


def distill_command(
    teacher: Annotated[Path, typer.Option("--teacher", help="two-stage teacher checkpoint")],
    student: Annotated[str, typer.Option("--student", help="student config, e.g. second_fast@0.5x")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format root")],
    out: Annotated[Path, typer.Option("--out", help="run directory")],
    epochs: Annotated[int, typer.Option(help="training epochs")] = _C.distill_epochs,
    batch_size: Annotated[int, typer.Option(help="frames per step")] = _C.batch_size,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = _C.lr,
    iou_branch: Annotated[bool, typer.Option("--iou-branch/--no-iou-branch", help="IoU-quality branch (for RE)")] = True,
    response: Annotated[float, typer.Option(help="weight of masked response KD (0 = off)")] = _C.distill.response,
    feature: Annotated[float, typer.Option(help="weight of masked feature KD (0 = off)")] = _C.distill.feature,
    student_oriented: Annotated[float, typer.Option(help="weight of student-oriented KD (0 = off)")] = _C.distill.student_oriented,
    label_assignment: Annotated[bool, typer.Option("--label-assignment/--no-label-assignment",
                                                   help="two-stage-oriented label assignment distillation")] = _C.distill.label_assignment,
    workers: Annotated[int, typer.Option(help="data loader workers")] = _C.num_workers,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the run already in --out")] = False,
) -> None:
    """Train a one-stage student with CaKD from a two-stage teacher."""
    from clean_deploy.compress.config import DistillConfig
    from clean_deploy.compress.distill.run import distill
    from clean_deploy.models.zoo import get_config, with_iou_branch
    from clean_deploy.train.run_dir import prepare_run_dir

    prepare_run_dir(out, resume, overwrite)
    cfg = get_config(student)
    if iou_branch:
        cfg = with_iou_branch(cfg)
    dcfg = DistillConfig(response=response, feature=feature, student_oriented=student_oriented,
                         label_assignment=label_assignment)
    res = distill(teacher, cfg, data, out, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, num_workers=workers),
                  dcfg, resume=resume)
    typer.echo(f"distilled {student} in {res.seconds / 60:.1f} min -> {res.final_checkpoint}")


def prune_command(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="student checkpoint to prune")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format root (calibration + fine-tuning)")],
    out: Annotated[Path, typer.Option("--out", help="run directory")],
    target_flops: Annotated[Optional[float], typer.Option(help="keep this fraction of the FLOPs")] = None,
    target_params: Annotated[Optional[float], typer.Option(help="keep this fraction of the parameters")] = None,
    method: Annotated[str, typer.Option(help="masked | taylor | unmasked | l1 | random")] = _C.prune.method,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="fine-tune with CaKD from this teacher")] = None,
    epochs: Annotated[int, typer.Option(help="fine-tuning epochs (0: prune only)")] = _C.finetune_epochs,
    batch_size: Annotated[int, typer.Option(help="frames per step")] = _C.batch_size,
    lr: Annotated[float, typer.Option(help="peak fine-tuning learning rate")] = _C.finetune_lr,
    calib_frames: Annotated[int, typer.Option(help="calibration frames for the importance")] = _C.prune.calib_frames,
    min_channels: Annotated[int, typer.Option(help="never fewer channels per layer")] = _C.prune.min_channels,
    steps: Annotated[int, typer.Option(help="iterative pruning: rounds of prune -> fine-tune (the epochs split "
                                            "between them); 1 = one-shot")] = _C.prune.steps,
) -> None:
    """Structured pruning to a FLOPs or parameter budget, then fine-tuning."""
    from clean_deploy.compress.config import PruneConfig
    from clean_deploy.compress.prune.run import prune

    if (target_flops is None) == (target_params is None):
        raise typer.BadParameter("give exactly one of --target-flops / --target-params")
    if steps < 1 or (steps > 1 and epochs < steps):
        raise typer.BadParameter(f"--steps {steps}: needs steps >= 1 and, for iterative pruning, --epochs >= steps "
                                 f"(got --epochs {epochs})")
    pcfg = PruneConfig(method=method, target=target_flops or target_params,
                       budget="flops" if target_flops is not None else "params",
                       calib_frames=calib_frames, min_channels=min_channels, steps=steps)
    report = prune(ckpt, data, out, pcfg, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr), teacher)
    typer.echo(f"params {report['params_before']} -> {report['params_after']}, "
               f"FLOPs x{report['flops_ratio']:.3f}; pruned model: {out / 'pruned.pth'}"
               + (f", fine-tuned: {report['finetuned']}" if "finetuned" in report else ""))


def compress_command(
    teacher: Annotated[Path, typer.Option("--teacher", help="two-stage teacher checkpoint")],
    student: Annotated[str, typer.Option("--student", help="student config, e.g. second_fast@0.5x")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format root")],
    out: Annotated[Path, typer.Option("--out", help="run directory (stages are resumed)")],
    target_flops: Annotated[float, typer.Option(help="pruned student keeps this fraction of its FLOPs")] = _C.prune.target,
    distill_epochs: Annotated[int, typer.Option(help="distillation epochs")] = _C.distill_epochs,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after pruning")] = _C.finetune_epochs,
    method: Annotated[str, typer.Option(help="pruning importance: masked | taylor | unmasked | l1 | random")] = _C.prune.method,
) -> None:
    """CLEAN end to end: distil -> prune -> fine-tune -> redundancy elimination -> eval + report."""
    from clean_deploy.pipeline import compress

    cfg = CompressConfig(student=student, distill_epochs=distill_epochs, finetune_epochs=finetune_epochs)
    cfg = cfg.replace(prune=cfg.prune.replace(method=method))
    compress(teacher, data, out, cfg, target_flops=target_flops, echo=typer.echo)
