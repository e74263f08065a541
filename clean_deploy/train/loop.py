"""The training loop: AdamW + one-cycle, gradient clipping, progress bar with loss and throughput,
CSV log, atomic checkpoints every epoch, exact resume, DDP under torchrun.

The loss is pluggable (``loss_fn(model, batch) -> (total, parts)``) so distillation and
fine-tuning after pruning reuse the same loop.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from clean_deploy.config import AugmentConfig, DataConfig, ExperimentConfig, TrainConfig
from clean_deploy.data.dataset import KittiDetectionDataset, collate_batch
from clean_deploy.models.config import DetectorConfig
from clean_deploy.models.detector import Detector, build_detector
from clean_deploy.models.sparse import describe_backend, sparse_backend
from clean_deploy.train.run_dir import remove_stale_temp_files
from clean_deploy.models.checkpoint import load_checkpoint, save_checkpoint
from clean_deploy.train.sync_bn import convert_sync_batchnorm
from clean_deploy.train.distributed import DistInfo, EpochSampler, barrier, init_distributed

#: settings that may change between an interrupted run and its resumption
_RESUME_FREE = {"num_workers", "device", "log_every", "ckpt_every_steps"}  # log_every: field of older versions

LossFn = Callable[[nn.Module, dict], "tuple[torch.Tensor, dict[str, float]]"]


def experiment_for(det: DetectorConfig, data_root: str | Path, augment: AugmentConfig | None = None,
                   gt_database_path: str | None = None) -> ExperimentConfig:
    """The data side of a run of ``det`` (its dataset is ``KittiDetectionDataset(exp, det, ...)``)."""
    return ExperimentConfig(name=det.name, data=DataConfig(root=str(data_root), gt_database_path=gt_database_path),
                            augment=augment or AugmentConfig())


def batch_to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def default_loss(model: nn.Module, batch: dict):
    core = model.module if hasattr(model, "module") else model
    out = model(batch)
    return core.loss(out, batch)


def make_optimizer(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.moms[0], 0.99),
                            weight_decay=cfg.weight_decay)
    total = max(1, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total, pct_start=cfg.pct_start, anneal_strategy="cos",
        cycle_momentum=True, base_momentum=cfg.moms[1], max_momentum=cfg.moms[0],
        div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor)
    return opt, sched


@dataclass
class TrainResult:
    model: Detector
    run_dir: Path
    final_checkpoint: Path
    history: list[dict[str, Any]]
    seconds: float


class Trainer:
    """Train a detector on a KITTI-format folder into ``run_dir``.

    ``run_dir/checkpoints/latest.pth`` is rewritten atomically every epoch (and every
    ``ckpt_every_steps``); ``resume=True`` continues from it exactly (same data order, RNG and
    optimiser state). ``run_dir/model.pth`` is the final weights+config; ``log.csv`` the log.
    """

    def __init__(self, det_cfg: DetectorConfig, train_cfg: TrainConfig, data_root: str | Path,
                 run_dir: str | Path, *, resume: bool = False, augment: AugmentConfig | None = None,
                 loss_fn: LossFn | None = None, model: nn.Module | None = None,
                 extra_modules: dict[str, nn.Module] | None = None, meta: dict | None = None,
                 progress: bool = True, dist_info: DistInfo | None = None) -> None:
        self.det_cfg, self.cfg = det_cfg, train_cfg
        self.run_dir = Path(run_dir)
        self.dist = dist_info or init_distributed(train_cfg.device)
        self.resume = resume
        self._seconds_before, self._t_start = 0.0, None
        self.loss_fn = loss_fn or default_loss
        self.meta = meta or {}
        self.progress = progress and self.dist.is_main
        torch.manual_seed(train_cfg.seed + self.dist.rank)
        self.model = (model if model is not None else build_detector(det_cfg)).to(self.dist.device)
        # extra trainable modules (e.g. distillation adapters) are optimised with the model
        self.extra = nn.ModuleDict(extra_modules or {}).to(self.dist.device)
        db_path = self.run_dir / "gt_database.npz"
        exp = experiment_for(det_cfg, data_root, augment, str(db_path))
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for p in remove_stale_temp_files(self.run_dir):
                print(f"removed {p} (temp file of an interrupted write)")
        # rank 0 builds the GT-sampling database (when missing) before the other ranks load it
        if not self.dist.is_main:
            barrier(self.dist)
        self.dataset = KittiDetectionDataset(exp, det_cfg, split=exp.data.train_split, training=True, seed=train_cfg.seed)
        if self.dist.is_main:
            barrier(self.dist)
        self.sampler = EpochSampler(len(self.dataset), train_cfg.batch_size, train_cfg.seed,
                                    self.dist.rank, self.dist.world_size, shuffle=True)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        if self.steps_per_epoch == 0:
            raise ValueError(f"{data_root}: split '{exp.data.train_split}' has {len(self.dataset)} frames, "
                             f"fewer than one batch of {train_cfg.batch_size} per process")
        params = nn.ModuleList([self.model, self.extra])
        self.optimizer, self.scheduler = make_optimizer(params, train_cfg, self.steps_per_epoch)
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            # BatchNorm over the global batch, as one process training on the whole batch would
            convert_sync_batchnorm(self.model)
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None,
                find_unused_parameters=False)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ state
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pth"

    def _state(self) -> dict:
        st = {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
              "torch_rng": torch.get_rng_state(), "train_seconds": self._elapsed(),
              "extra": self.extra.state_dict()}
        if self.model.roi_head is not None:
            st["roi_rng"] = self.model.roi_head.sampler_state()
        return st

    def _elapsed(self) -> float:
        """Training wall time so far, including the runs this one resumed."""
        return self._seconds_before + (time.time() - self._t_start if self._t_start is not None else 0.0)

    def save(self) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.ckpt_path, self.model, self.det_cfg, optimizer=self.optimizer,
                        scheduler=self.scheduler, state=self._state(),
                        meta={**self.meta, "train_config": self.cfg.to_dict(), "kind": "training"})

    def load(self) -> bool:
        if not self.ckpt_path.is_file():
            return False
        ck = load_checkpoint(self.ckpt_path, map_location=self.dist.device)
        if ck["config"] != self.det_cfg:
            raise ValueError(f"{self.ckpt_path}: stored detector config differs from the requested one; "
                             "resume with the same --config (or start a new run dir)")
        stored = {k: v for k, v in ck["meta"].get("train_config", {}).items() if k not in _RESUME_FREE}
        current = {k: v for k, v in self.cfg.to_dict().items() if k not in _RESUME_FREE}
        if stored and stored != current:
            diff = {k: (stored.get(k), current.get(k)) for k in current if stored.get(k) != current.get(k)}
            raise ValueError(f"{self.ckpt_path}: train config differs from the interrupted run's {diff}; "
                             "resume with the same settings (or start a new run dir)")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        st = ck["state"]
        self.epoch, self.step_in_epoch, self.global_step = st["epoch"], st["step_in_epoch"], st["global_step"]
        self._seconds_before = float(st.get("train_seconds", 0.0))  # wall time of the interrupted run(s)
        torch.set_rng_state(st["torch_rng"])
        self.extra.load_state_dict(st["extra"])
        if "roi_rng" in st and self.model.roi_head is not None:
            self.model.roi_head.set_sampler_state(st["roi_rng"])
        return True

    # ------------------------------------------------------------------- loop
    def _loader(self, skip: int):
        self.dataset.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, skip)
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.cfg.batch_size, sampler=self.sampler, collate_fn=collate_batch,
            num_workers=self.cfg.num_workers, persistent_workers=False,
            multiprocessing_context="fork" if self.cfg.num_workers > 0 else None)

    def train_step(self, batch: dict) -> dict[str, float]:
        self.ddp_model.train()
        self.extra.train()
        batch = batch_to_device(batch, self.dist.device)
        total, parts = self.loss_fn(self.ddp_model, batch)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: {parts}")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        gnorm = nn.utils.clip_grad_norm_(list(self.model.parameters()) + list(self.extra.parameters()),
                                         self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        self.step_in_epoch += 1
        parts = {**parts, "loss": float(total.detach()), "grad_norm": float(gnorm)}
        return parts

    def fit(self) -> TrainResult:
        self._t_start = time.time()
        if self.resume and self.load() and self.dist.is_main:
            print(f"resumed from {self.ckpt_path} at epoch {self.epoch} step {self.step_in_epoch}")
        self.meta["sparse_backend"] = sparse_backend(self.dist.device)
        if self.dist.is_main and self.progress:
            print(f"sparse conv backend: {describe_backend(self.dist.device)}")
        if self.model.roi_head is not None and self.global_step == 0:
            self.model.roi_head.reseed(self.cfg.seed)
        log_path = self.run_dir / "log.csv"
        writer = None
        log_file = None
        if self.dist.is_main:
            new = not log_path.exists() or not self.resume
            log_file = open(log_path, "w" if new else "a", newline="")
        try:
            while self.epoch < self.cfg.epochs:
                loader = self._loader(self.step_in_epoch)
                bar = tqdm(loader, total=self.steps_per_epoch, initial=self.step_in_epoch, disable=not self.progress,
                           desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", dynamic_ncols=True, leave=False)
                t_last = time.time()
                for batch in bar:
                    parts = self.train_step(batch)
                    now = time.time()
                    fps = self.cfg.batch_size * self.dist.world_size / max(now - t_last, 1e-9)
                    t_last = now
                    row = {"epoch": self.epoch, "step": self.global_step, "lr": self.scheduler.get_last_lr()[0],
                           "frames_per_s": fps, **parts}
                    self.history.append(row)
                    if log_file is not None:
                        if writer is None:
                            writer = csv.DictWriter(log_file, fieldnames=list(row), extrasaction="ignore")
                            if log_file.tell() == 0:
                                writer.writeheader()
                        writer.writerow(row)
                        log_file.flush()  # a kill loses no row (a step is ~0.1-3 s; the flush is µs)
                    bar.set_postfix(loss=f"{parts['loss']:.3f}", fps=f"{fps:.2f}")
                    if self.cfg.ckpt_every_steps and self.global_step % self.cfg.ckpt_every_steps == 0:
                        self.save()
                bar.close()
                self.epoch += 1
                self.step_in_epoch = 0
                self.save()
                if self.dist.is_main and self.progress:
                    recent = [h["loss"] for h in self.history[-self.steps_per_epoch:]]
                    if recent:
                        print(f"epoch {self.epoch}/{self.cfg.epochs}: mean loss {sum(recent) / len(recent):.4f}")
        finally:
            if log_file is not None:
                log_file.close()
        final = self.run_dir / "model.pth"
        seconds = self._elapsed()
        if self.dist.is_main:
            save_checkpoint(final, self.model, self.det_cfg,
                            meta={**self.meta, "kind": "model", "epochs": self.cfg.epochs,
                                  "train_seconds": seconds, "train_config": self.cfg.to_dict()})
        return TrainResult(self.model, self.run_dir, final, self.history, seconds)


def train(det_cfg: DetectorConfig, data_root: str | Path, run_dir: str | Path,
          train_cfg: TrainConfig | None = None, resume: bool = False, **kwargs) -> TrainResult:
    """Library entry point of ``clean-deploy train``."""
    return Trainer(det_cfg, train_cfg or TrainConfig(), data_root, run_dir, resume=resume, **kwargs).fit()
