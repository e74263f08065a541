"""benchmarks/train_speed.py: repeated runs are merged per part by the median of the runs' medians,
and the CaKD / plain ratio is paired per repeat (the runs alternate)."""
from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ts():
    spec = importlib.util.spec_from_file_location("train_speed_bench", ROOT / "benchmarks" / "train_speed.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(kind, total, backward, load):
    return {"kind": kind, "backend": "clean_deploy", "steps": [{"step total": total}],
            "median_ms": {"step total": total, "backward": backward}, "load_before": load}


def test_merge_and_paired_ratios(ts):
    student = [_run("student", t, b, l) for t, b, l in [(500, 240, 1.0), (400, 250, 1.1), (600, 230, 1.2)]]
    cakd = [_run("cakd", t, b, l) for t, b, l in [(1000, 300, 1.3), (1000, 310, 1.4), (1100, 290, 1.5)]]
    s, c = ts.merge_repeats(student), ts.merge_repeats(cakd)
    assert s["median_ms"] == {"step total": 500, "backward": 240}
    assert c["median_ms"] == {"step total": 1000, "backward": 300}
    assert s["loads_before"] == [1.0, 1.1, 1.2]
    ratios = ts.paired_ratios(s, c)
    assert ratios == pytest.approx([2.0, 2.5, 1100 / 600])
    # the paired median is not the ratio of the medians
    assert statistics.median(ratios) == pytest.approx(2.0) and 1000 / 500 == 2.0
    meta = {"date": "2026-12-03", "machine": "m", "threads": 2, "workers": 0, "frames": 40, "steps": 10,
            "warmup": 2, "columns": ["x"], "commits": {"x": "abc"}, "teachers": {"x": "t.pth (sha256 0123)"}}
    md = ts.render({("x", "student"): s, ("x", "cakd"): c}, meta)
    assert "x: 2.00x [1.83..2.50] (median [range] of 3 paired runs: 2.00, 2.50, 1.83)" in md
    assert "`x`: t.pth (sha256 0123)" in md
    assert "load average (1 min) before each run: 1.00, 1.10, 1.20" in md


def test_single_runs_keep_the_old_table(ts):
    s, c = ts.merge_repeats([_run("student", 500, 240, 1.0)]), ts.merge_repeats([_run("cakd", 1100, 300, 1.0)])
    assert ts.paired_ratios(s, c) == []
    meta = {"date": "d", "machine": "m", "threads": 2, "workers": 0, "frames": 40, "steps": 7, "warmup": 2,
            "columns": ["x"], "commits": {"x": "abc"}}
    md = ts.render({("x", "student"): s, ("x", "cakd"): c}, meta)
    assert "CaKD step / plain student step: x: 2.20x" in md and "The teacher is untrained" in md


def test_bad_arguments_are_one_line_errors(ts, tmp_path):
    with pytest.raises(SystemExit, match="--repeats"):
        ts.main(["--repeats", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--teacher-checkpoint"):
        ts.main(["--teacher-checkpoint", str(tmp_path / "missing.pth"), "--out", str(tmp_path)])
