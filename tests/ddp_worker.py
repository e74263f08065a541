"""Worker of the DDP gradient test: one gloo process computing gradients on its share of a batch."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))


def freeze_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def gradients(model, batch):
    model.train()
    freeze_bn(model)
    core = model.module if hasattr(model, "module") else model
    out = model(batch)
    loss, _ = core.loss(out, batch)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in core.named_parameters() if p.grad is not None}


def worker(rank: int, world: int, rdzv: str, out_dir: str, cfg_name: str) -> None:
    from clean_deploy.data.dataset import collate_batch
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from toy import toy_samples

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    cfg = get_config(cfg_name)
    torch.manual_seed(0)
    model = build_detector(cfg)
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    samples = toy_samples(cfg, world)
    grads = gradients(ddp, collate_batch([samples[rank]]))
    if rank == 0:
        torch.save(grads, os.path.join(out_dir, "ddp_grads.pt"))
    dist.barrier()
    dist.destroy_process_group()


def sync_bn_worker(rank: int, world: int, rdzv: str, out_dir: str) -> None:
    """Global BatchNorm on rank's share (uneven sizes) of a fixed batch: outputs, input gradients,
    parameter gradients (summed over ranks as DDP would average them, times world) and running stats."""
    from clean_deploy.train.sync_bn import convert_sync_batchnorm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    res = {}
    for kind, shape in (("1d", (37, 6)), ("2d", (3, 5, 4, 7))):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 1
        dy = torch.randn(*shape, generator=g, dtype=torch.float64)
        cut = 25 if kind == "1d" else 1  # uneven shares: 25 / 12 rows, 1 / 2 images
        part = slice(0, cut) if rank == 0 else slice(cut, None)
        bn = (torch.nn.BatchNorm1d(6) if kind == "1d" else torch.nn.BatchNorm2d(5)).double()
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.uniform_(-1, 1, generator=g)
        model = convert_sync_batchnorm(torch.nn.Sequential(bn)).train()
        xi = x[part].clone().requires_grad_(True)
        y = model(xi)
        y.backward(dy[part])
        grads = torch.stack([model[0].weight.grad, model[0].bias.grad])
        dist.all_reduce(grads)
        res[kind] = {"y": y.detach(), "dx": xi.grad, "dparams": grads, "rm": model[0].running_mean.clone(),
                     "rv": model[0].running_var.clone(), "type": type(model[0]).__name__}
    torch.save(res, os.path.join(out_dir, f"sync_bn_{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def bn_train_gradients(model, batch):
    """Gradients with BatchNorm in training mode (batch statistics)."""
    model.train()
    core = model.module if hasattr(model, "module") else model
    out = model(batch)
    loss, _ = core.loss(out, batch)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in core.named_parameters() if p.grad is not None}


def detector_sync_bn_worker(rank: int, world: int, rdzv: str, out_dir: str, cfg_name: str,
                            sync: bool = True) -> None:
    from clean_deploy.data.dataset import collate_batch
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.sync_bn import convert_sync_batchnorm
    from toy import toy_samples

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    cfg = get_config(cfg_name)
    torch.manual_seed(0)
    model = build_detector(cfg)
    if sync:
        convert_sync_batchnorm(model)
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    samples = toy_samples(cfg, world)
    grads = bn_train_gradients(ddp, collate_batch([samples[rank]]))
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    if rank == 0:
        torch.save({"grads": grads, "stats": stats}, os.path.join(out_dir, "ddp_bn_grads.pt"))
    dist.barrier()
    dist.destroy_process_group()
