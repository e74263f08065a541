"""Masked category-knowledge-driven structured pruning: importance, planning, physical removal."""
