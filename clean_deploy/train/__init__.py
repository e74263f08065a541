"""Training: loop (resumable), schedule, distributed (torchrun); checkpoint I/O is models.checkpoint."""
