"""``clean-deploy train`` and ``clean-deploy test``: thin wrappers over the training loop and the
inference + KITTI evaluation runner."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clean_deploy.config import TrainConfig

_T = TrainConfig()  # option defaults: the library's, stated once


def train_command(
    config: Annotated[str, typer.Option("--config", help="detector config, e.g. second_fast, voxel_rcnn_fast, centerpoint_fast@0.5x")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format root")],
    out: Annotated[Path, typer.Option("--out", help="run directory (checkpoints, log.csv, model.pth)")],
    epochs: Annotated[int, typer.Option(help="training epochs")] = _T.epochs,
    batch_size: Annotated[int, typer.Option(help="frames per step and process")] = _T.batch_size,
    lr: Annotated[float, typer.Option(help="peak one-cycle learning rate")] = _T.lr,
    workers: Annotated[int, typer.Option(help="data loader workers")] = _T.num_workers,
    seed: Annotated[int, typer.Option(help="random seed")] = _T.seed,
    iou_branch: Annotated[bool, typer.Option("--iou-branch/--no-iou-branch", help="train the IoU-quality branch")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = _T.device,
    resume: Annotated[bool, typer.Option("--resume", help="continue from RUN_DIR/checkpoints/latest.pth")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the run already in --out")] = False,
    ckpt_every_steps: Annotated[int, typer.Option(help="also checkpoint every N steps (0: epoch ends only)")] = _T.ckpt_every_steps,
    eval_split: Annotated[Optional[str], typer.Option(help="evaluate this split after training ('' to skip)")] = "val",
) -> None:
    """Train a detector (multi-process: launch with ``torchrun --nproc_per_node N``)."""
    from clean_deploy.models.zoo import get_config, with_iou_branch
    from clean_deploy.train.loop import train
    from clean_deploy.train.run_dir import prepare_run_dir

    import torch.distributed as dist

    prepare_run_dir(out, resume, overwrite)
    det = get_config(config)
    if iou_branch:
        det = with_iou_branch(det)
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, num_workers=workers, seed=seed,
                       device=device, ckpt_every_steps=ckpt_every_steps)
    res = train(det, data, out, tcfg, resume=resume, meta={"data": str(data), "config_name": config})
    is_main = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    if is_main:
        typer.echo(f"trained {config} in {res.seconds / 60:.1f} min -> {res.final_checkpoint}")
        if eval_split:
            _test(res.final_checkpoint, data, eval_split, out / f"pred_{eval_split}", out / f"eval_{eval_split}.json",
                  range_filter=True)


def _test(ckpt: Path, data: Path, split: str, pred_out: Path, json_out: Optional[Path], range_filter: bool,
          batch_size: int = 2, device: str = "auto", first_stage: bool = False) -> dict:
    from clean_deploy.eval.files import format_table
    from clean_deploy.models.checkpoint import load_detector
    from clean_deploy.train.distributed import pick_device
    from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap, predict_split

    model, _ = load_detector(ckpt)
    if first_stage and not model.is_two_stage:
        raise ValueError(f"--first-stage: {ckpt} holds {model.cfg.name}, which has no second stage (the option is "
                         "for two-stage detectors such as voxel_rcnn)")
    dev = pick_device(device)
    run = predict_split(model, data, split, batch_size=batch_size, device=dev, pred_dir=pred_out,
                        first_stage=first_stage)
    result = evaluate_predictions(data, split, pred_out, model.cfg.class_names,
                                  model.cfg.point_cloud_range if range_filter else None)
    typer.echo(format_table(result))
    typer.echo(f"mean moderate 3D AP (R40): {mean_moderate_ap(result):.2f}   "
               f"({len(run.frame_ids)} frames, {run.seconds / max(len(run.frame_ids), 1) * 1000:.0f} ms/frame incl. I/O)")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def test_command(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="checkpoint (model.pth or checkpoints/latest.pth)")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format root")],
    split: Annotated[str, typer.Option(help="ImageSets split")] = "val",
    pred_out: Annotated[Path, typer.Option("--pred-out", help="where KITTI result files are written")] = Path("pred"),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the AP dict here")] = None,
    range_filter: Annotated[bool, typer.Option(
        "--range-filter/--no-range-filter",
        help="treat GT outside the detector's point-cloud range as DontCare (default on)")] = True,
    batch_size: Annotated[int, typer.Option(help="frames per forward pass")] = 2,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    first_stage: Annotated[bool, typer.Option(
        "--first-stage", help="two-stage detectors: score the dense head's boxes without the RoI head's "
                              "refinement (what the second stage adds)")] = False,
) -> None:
    """Run a checkpoint on a split, write KITTI results and print the KITTI AP table."""
    _test(ckpt, data, split, pred_out, json_out, range_filter, batch_size, device, first_stage)
