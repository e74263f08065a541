"""Plots for reports: accuracy vs latency (with the Pareto front) and per-stage latency bars."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from clean_deploy.viz.figure import save_figure  # noqa: E402


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower latency and higher accuracy is better)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for j, (l2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def accuracy_latency_plot(rows: list[dict], out: str | Path, title: str, acc_label: str = "mean moderate 3D AP (%)") -> Path:
    """``rows``: dicts with ``label``, ``latency_ms``, ``accuracy`` (and optional ``params_m`` for the marker size)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=130)
    pts = [(r["latency_ms"], r["accuracy"]) for r in rows]
    sizes = [30 + 40 * r.get("params_m", 1.0) for r in rows]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=sizes, c="tab:blue", alpha=0.7, edgecolors="k")
    for r, (x, y) in zip(rows, pts):
        ax.annotate(r["label"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    front = pareto_front(pts)
    if len(front) > 1:
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="tab:red", lw=1, label="Pareto front")
        ax.legend(fontsize=7)
    ax.set_xlabel("latency per frame (ms)")
    ax.set_ylabel(acc_label)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def latency_breakdown_plot(rows: list[dict], out: str | Path, title: str) -> Path:
    """``rows``: dicts with ``label`` and ``stages`` (stage name -> ms); stacked horizontal bars."""
    stages = []
    for r in rows:
        for s in r["stages"]:
            if s not in stages:
                stages.append(s)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5), dpi=130)
    left = [0.0] * len(rows)
    for s in stages:
        vals = [r["stages"].get(s, 0.0) for r in rows]
        ax.barh([r["label"] for r in rows], vals, left=left, label=s)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("ms per frame (p50)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.invert_yaxis()
    return save_figure(fig, out)


def accuracy_compute_errorbar_plot(rows: list[dict], out: str | Path, title: str,
                                   acc_label: str = "mean moderate 3D AP (%)") -> Path:
    """``rows``: dicts with ``label``, ``gmacs``, ``mean``, ``std`` and ``n`` (seeds); accuracy with
    one-standard-deviation error bars against compute per frame (log x axis)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    for r in rows:
        ax.errorbar(r["gmacs"], r["mean"], yerr=r["std"], fmt="o", ms=5, capsize=3, alpha=0.8)
        ax.annotate(f"{r['label']} (n={r['n']})", (r["gmacs"], r["mean"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("GMACs per frame (log)")
    ax.set_ylabel(acc_label)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, out)
