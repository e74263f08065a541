"""Cached stages reuse an output only when the same settings and input bytes made it, resume a
started run of the same settings, and refuse (one line, nothing overwritten) anything else."""
import json

import pytest

from clean_deploy.stages import Stage, StageMismatch, run_stage


def _stage(tmp_path, params, calls, inputs=()):
    out = tmp_path / "run" / "model.bin"

    def run():
        calls.append(1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(json.dumps(params).encode())

    return Stage("train", out, run, params, tuple(inputs))


def test_reused_when_same_rerun_refused_when_settings_or_inputs_change(tmp_path):
    src = tmp_path / "teacher.pth"
    src.write_bytes(b"weights v1")
    calls = []
    assert run_stage(_stage(tmp_path, {"epochs": 2, "kd": {"alpha": 0.5}}, calls, [src]))
    assert not run_stage(_stage(tmp_path, {"kd": {"alpha": 0.5}, "epochs": 2}, calls, [src]))  # key order
    assert len(calls) == 1
    rec = json.loads((tmp_path / "run" / "model.bin.stage.json").read_text())
    assert rec["done"] and rec["params"] == {"epochs": 2, "kd": {"alpha": 0.5}} and len(rec["inputs"][0]) == 64
    with pytest.raises(StageMismatch, match=r"stage 'train'.*made with other settings.*kd\.alpha 0\.5 -> 0\.7"):
        run_stage(_stage(tmp_path, {"epochs": 2, "kd": {"alpha": 0.7}}, calls, [src]))
    src.write_bytes(b"weights v2")
    with pytest.raises(StageMismatch, match="input teacher.pth has other contents"):
        run_stage(_stage(tmp_path, {"epochs": 2, "kd": {"alpha": 0.5}}, calls, [src]))
    assert len(calls) == 1 and json.loads((tmp_path / "run" / "model.bin").read_bytes())["kd"]["alpha"] == 0.5


def test_started_run_resumes_only_with_its_own_settings(tmp_path):
    calls = []
    st = _stage(tmp_path, {"epochs": 2}, calls)

    def crash():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(Stage(st.name, st.output, crash, st.params))
    assert not json.loads(st.record_path.read_text())["done"]
    with pytest.raises(StageMismatch, match="was started with other settings"):
        run_stage(_stage(tmp_path, {"epochs": 3}, calls))
    assert run_stage(st) and calls == [1]


def test_output_without_record_and_missing_input_are_refused(tmp_path):
    out = tmp_path / "model.bin"
    out.write_bytes(b"x")
    with pytest.raises(StageMismatch, match="exists without a record"):
        run_stage(Stage("s", out, lambda: None))
    with pytest.raises(FileNotFoundError, match="input .*nope.pth does not exist"):
        run_stage(Stage("s", tmp_path / "o2", lambda: None, {}, (tmp_path / "nope.pth",)))
    (tmp_path / "o4").write_bytes(b"x")
    (tmp_path / "o4.stage.json").write_text("[]")
    with pytest.raises(StageMismatch, match="not a stage record"):
        run_stage(Stage("s", tmp_path / "o4", lambda: None))
    with pytest.raises(RuntimeError, match="without writing"):
        run_stage(Stage("s", tmp_path / "o3", lambda: None))


def test_input_hashed_once_per_process_and_rehashed_when_changed(tmp_path, monkeypatch):
    import builtins
    import hashlib

    from clean_deploy.stages import file_sha256

    f = tmp_path / "teacher.pth"
    f.write_bytes(b"a" * 1000)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    assert file_sha256(f) == file_sha256(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert opened == [str(f)]
    f.write_bytes(b"b" * 1001)  # other contents: read again
    assert file_sha256(f) == hashlib.sha256(b"b" * 1001).hexdigest() and len(opened) == 2
    # same size, rewritten in place with the mtime set back (cp -p, touch -r): read again
    import os
    import time

    st = os.stat(f)
    time.sleep(0.01)
    with open(f, "r+b") as h:
        h.write(b"c" * 1001)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(f).st_mtime_ns == st.st_mtime_ns and os.stat(f).st_size == st.st_size
    n = len(opened)  # the rewrite above went through the patched open too
    assert file_sha256(f) == hashlib.sha256(b"c" * 1001).hexdigest() and len(opened) == n + 1
