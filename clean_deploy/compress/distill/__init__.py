"""CaKD (category knowledge-driven distillation) from a two-stage teacher into one-stage students."""
