"""Measurements: latency per stage, peak memory, model size, reports and plots."""
