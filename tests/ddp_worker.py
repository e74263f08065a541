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
