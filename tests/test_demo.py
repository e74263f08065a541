"""The README's main command in its quick form: every stage of the demo runs and leaves its outputs."""
import json

import pytest

from typer.testing import CliRunner

from clean_deploy.cli.main import app


def test_quick_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads((out / "demo_summary.json").read_text())
    assert set(summary["timings_s"]) >= {"data", "reference", "train", "compress", "export", "bench"}
    for f in ("bev_val_frame.png", "teacher/model.pth", "clean/compressed.pth", "clean/report.md",
              "export/student.onnx", "export/student.json", "bench/bench.json", "bench/accuracy_vs_latency.png"):
        assert (out / f).is_file(), f
    bench = json.loads((out / "bench" / "bench.json").read_text())
    backends = {r["backend"] for r in bench["results"]}
    # `make setup` builds the C++ sample, and the demo then benchmarks it too
    from clean_deploy.bench.cpp_sample import sample_binary

    try:
        sample_binary()
        cpp = {"cpp"}
    except FileNotFoundError:
        cpp = set()
    assert backends == {"torch", "onnxruntime"} | cpp
    assert "params x fewer" in res.output  # the final ratio table
    # a re-run reuses the teacher trained with the same settings on the same benchmark, and refuses to
    # reuse it for other settings (the old demo reused any model.pth it found)
    from clean_deploy.demo import DemoConfig, _train_once
    from clean_deploy.stages import StageMismatch

    q = DemoConfig.quick()
    said = []
    assert _train_once(q.teacher, q.teacher_epochs, out / "data", out / "teacher", said.append) == out / "teacher/model.pth"
    assert said and "reusing" in said[0]
    with pytest.raises(StageMismatch, match=r"stage 'train voxel_rcnn_fast@0.25x'.*epochs 1 -> 2"):
        _train_once(q.teacher, 2, out / "data", out / "teacher", said.append)
