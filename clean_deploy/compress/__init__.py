"""CLEAN compression: CaKD distillation, masked category-knowledge pruning, IoU-aware redundancy
elimination, and the pipeline that chains them."""
