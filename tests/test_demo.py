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


def test_demo_refuses_other_data_settings_before_regenerating(tmp_path, monkeypatch):
    """A demo directory whose stages were made from a benchmark of other settings is refused before the
    benchmark is synthesised again (which would replace the data those stages came from); through the
    CLI: one line, a non-zero exit, the data untouched."""
    import clean_deploy.data.synth as synth
    from clean_deploy.demo import DemoConfig, run_demo
    from clean_deploy.stages import StageMismatch

    out = tmp_path / "demo"
    (out / "data").mkdir(parents=True)
    meta = out / "data" / "synth_meta.json"
    meta.write_text(json.dumps({"frames": {"train": 99, "val": 9}, "seed": 0, "config": {"lidar": {"azimuth_res_deg": 0.4}}}))
    (out / "teacher").mkdir()
    (out / "teacher" / "model.pth.stage.json").write_text("{}")
    monkeypatch.setattr(synth, "generate_dataset", lambda *a, **k: pytest.fail("regenerated the data"))
    with pytest.raises(StageMismatch, match=r"synthesised with other settings .*\(teacher/model.pth.stage.json\)"):
        run_demo(DemoConfig.quick(out=str(out)), echo=lambda s: None)
    before = meta.read_text()
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CLEAN_DEPLOY_DEBUG"}
    res = subprocess.run([sys.executable, "-m", "clean_deploy", "demo", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 4 and len(lines) == 1 and "use a new --out" in lines[0], res.stderr[-2000:]
    assert meta.read_text() == before
