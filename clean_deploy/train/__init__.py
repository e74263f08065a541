"""Training: loop, checkpoints (atomic, resumable), schedule, distributed (torchrun)."""
