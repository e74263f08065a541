"""Plots for reports: accuracy vs latency (with the Pareto front) and per-stage latency bars."""
from __future__ import annotations

import math
import statistics
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


def dodge_layout(gmacs: list[float], means: list[float], spread: float = 0.03,
                 min_gap: float = 1.0) -> tuple[list[float], list[float], list[float]]:
    """Where rows at the same compute go: x positions spread by factors ``exp(+-k*spread)`` around
    their shared GMACs (highest mean rightmost: ordered, no error bar hides another); their labels
    start right of the group's rightmost point, at heights pushed at least ``min_gap`` (y units)
    apart, in the order of the means. Returns (x, label x, label y) per row; a row alone at its
    compute keeps its own x and y."""
    xs, ys = list(gmacs), list(means)
    label_xs = [g * math.exp(spread) for g in gmacs]
    groups: dict[float, list[int]] = {}
    for i, g in enumerate(gmacs):
        groups.setdefault(round(math.log(g), 2), []).append(i)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        idx = sorted(idx, key=lambda i: means[i])
        for k, i in enumerate(idx):
            xs[i] = gmacs[i] * math.exp((k - (len(idx) - 1) / 2) * spread)
        for i in idx:
            label_xs[i] = max(xs[j] for j in idx) * math.exp(spread)
        # labels bottom-up, each at least min_gap above the previous, then the block re-centred on the means
        lab = [means[idx[0]]]
        for i in idx[1:]:
            lab.append(max(means[i], lab[-1] + min_gap))
        shift = (sum(means[i] for i in idx) - sum(lab)) / len(idx)
        lo = min(means[i] for i in idx) - min_gap
        shift = max(shift, lo - lab[0])
        for i, y in zip(idx, lab):
            ys[i] = y + shift
    return xs, label_xs, ys


def accuracy_compute_errorbar_plot(rows: list[dict], out: str | Path, title: str,
                                   acc_label: str = "mean moderate 3D AP (%)") -> Path:
    """``rows``: dicts with ``label``, ``gmacs``, ``mean``, ``std`` and ``n`` (seeds); accuracy with
    one-standard-deviation error bars against compute per frame (log x axis). Rows at the same
    compute are spread a little along x and their labels apart (:func:`dodge_layout`)."""
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=130)
    means = [r["mean"] for r in rows]
    span = (max(means) - min(means)) if rows else 1.0
    xs, label_xs, label_ys = dodge_layout([r["gmacs"] for r in rows], means, min_gap=max(span, 1.0) * 0.045)
    for r, x, lx, ly in zip(rows, xs, label_xs, label_ys):
        line = ax.errorbar(x, r["mean"], yerr=r["std"], fmt="o", ms=5, capsize=3, alpha=0.8)
        color = line[0].get_color()
        ax.annotate(f"{r['label']} (n={r['n']})", (x, r["mean"]), xytext=(lx, ly), fontsize=7,
                    va="center", color=color,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": color} if abs(ly - r["mean"]) > 1e-9 else None)
    ax.set_xscale("log")
    if rows:  # room for the labels right of the rightmost point
        ax.set_xlim(min(xs) / 1.15, max(xs) * 1.5)
    ax.set_xlabel("GMACs per frame (log)")
    ax.set_ylabel(acc_label)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, out)


def mean_std_by_epoch(curves: list[list[float]]) -> list[tuple[float, float, int]]:
    """Per epoch, over the curves that reach it (a run still under way is shorter): (mean, sample
    standard deviation (0 for a single curve), number of curves)."""
    out = []
    for e in range(max((len(c) for c in curves), default=0)):
        v = [c[e] for c in curves if len(c) > e]
        out.append((statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)))
    return out


def convergence_plot(loss_curves: dict[str, list[list[float]]], ap_series: dict[str, list[dict]],
                     out: str | Path, title: str, acc_label: str = "test mean moderate 3D AP (%)",
                     dodge: float = 0.15) -> Path:
    """Two panels. Left: training loss per fine-tuning epoch, one line per row (mean over its seeds'
    ``loss_curves``, a band of one standard deviation). Right: accuracy against total training
    epochs, one line per pipeline through its training lengths; ``ap_series`` maps a pipeline to
    points ``{"epochs", "mean", "std", "n"}`` (one-standard-deviation error bars; pipeline i of k drawn
    ``(i - (k-1)/2) * dodge`` epochs off its length)."""
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=130)
    for row, curves in loss_curves.items():
        st = mean_std_by_epoch(curves)
        x = list(range(1, len(st) + 1))
        m = [s[0] for s in st]
        line, = ax_l.plot(x, m, "-o", ms=3, lw=1.2, label=f"{row} (n={max(s[2] for s in st)})")
        ax_l.fill_between(x, [a - s for a, s, _ in st], [a + s for a, s, _ in st], color=line.get_color(), alpha=0.15)
    ax_l.set_xlabel("fine-tuning epoch")
    ax_l.set_ylabel("mean training loss (KD fine-tuning)")
    ax_l.set_title("fine-tuning loss (one-cycle lr: the fall at the end is partly the lr annealing)", fontsize=8)
    ax_l.grid(alpha=0.3)
    if loss_curves:
        ax_l.legend(fontsize=6)
    k = len(ap_series)
    for i, (name, pts) in enumerate(ap_series.items()):
        pts = sorted(pts, key=lambda p: p["epochs"])
        dx = (i - (k - 1) / 2) * dodge  # pipelines at the same length side by side, error bars apart
        ax_r.errorbar([p["epochs"] + dx for p in pts], [p["mean"] for p in pts], yerr=[p["std"] for p in pts],
                      fmt="-o", ms=4, capsize=3, lw=1.2, alpha=0.85,
                      label=f"{name} (n={','.join(str(p['n']) for p in pts)})")
    ax_r.set_xlabel("total training epochs (student + fine-tuning)")
    ax_r.set_ylabel(acc_label)
    ax_r.set_title("accuracy against training length (mean +- std over seeds)", fontsize=8)
    ax_r.grid(alpha=0.3)
    if ap_series:
        ax_r.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, out)
