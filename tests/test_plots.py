"""clean_deploy/bench/plots.py: rows at the same compute do not hide each other's error bars or labels."""
from __future__ import annotations

import math

import pytest

import numpy as np

from clean_deploy.bench.plots import (accuracy_compute_errorbar_plot, convergence_plot, dodge_layout,
                                  mean_std_by_epoch, pareto_front)


def test_dodge_layout_spreads_rows_at_the_same_compute():
    gmacs = [0.79, 0.79, 0.79, 1.57, 4.12]
    means = [63.3, 64.8, 63.0, 54.7, 71.6]
    xs, lxs, lys = dodge_layout(gmacs, means, spread=0.03, min_gap=1.0)
    # the three 0.79-GMAC rows: distinct x, ordered by mean, within exp(+-0.03) of their compute
    group = sorted(range(3), key=lambda i: means[i])
    assert [xs[i] for i in group] == sorted(xs[:3]) and len(set(xs[:3])) == 3
    assert all(abs(math.log(x / 0.79)) <= 0.03 + 1e-12 for x in xs[:3])
    assert xs[group[1]] == pytest.approx(0.79)  # the middle one stays on its compute
    # their labels: right of the rightmost point, >= min_gap apart, in the order of the means
    assert all(lx > max(xs[:3]) for lx in lxs[:3])
    ys = [lys[i] for i in group]
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(ys, ys[1:]))
    # rows alone at their compute keep their own place and height
    assert xs[3:] == gmacs[3:] and lys[3:] == means[3:]


def test_errorbar_plot_writes_a_png(tmp_path):
    rows = [{"label": "a", "gmacs": 0.79, "mean": 63.0, "std": 1.5, "n": 3},
            {"label": "b", "gmacs": 0.79, "mean": 63.2, "std": 0.0, "n": 1}]
    out = accuracy_compute_errorbar_plot(rows, tmp_path / "p.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_front_against_brute_force():
    pts = [(10.0, 60.0), (12.0, 65.0), (11.0, 59.0), (30.0, 70.0), (30.0, 69.0)]
    assert pareto_front(pts) == [0, 1, 3]


def test_mean_std_by_epoch_against_numpy_with_a_shorter_curve():
    curves = [[2.0, 1.8, 1.7], [2.2, 1.9, 1.6], [2.1, 1.85]]  # the last run is still under way
    st = mean_std_by_epoch(curves)
    assert [n for *_, n in st] == [3, 3, 2]
    for e, (m, sd, _) in enumerate(st):
        v = np.array([c[e] for c in curves if len(c) > e])
        assert m == pytest.approx(v.mean()) and sd == pytest.approx(v.std(ddof=1))
    assert mean_std_by_epoch([[1.5, 1.2]]) == [(1.5, 0.0, 1), (1.2, 0.0, 1)]
    assert mean_std_by_epoch([]) == []


def test_convergence_plot_writes_a_png(tmp_path):
    out = convergence_plot({"prune_masked_0.5x_ft12": [[2.0, 1.8], [2.1, 1.7]]},
                           {"plain": [{"epochs": 24, "mean": 64.5, "std": 3.1, "n": 3},
                                      {"epochs": 12, "mean": 54.8, "std": 0.8, "n": 3}]}, tmp_path / "c.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
