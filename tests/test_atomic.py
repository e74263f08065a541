"""atomic_write: the written file has the permissions of an ordinary write (not mkstemp's 0o600),
keeps a replaced file's mode, and leaves nothing behind when the writer fails."""
from __future__ import annotations

import os
import stat

import pytest

from clean_deploy.atomic import atomic_write


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.json", lambda f: f.write(b"{}"))
        assert _mode(tmp_path / "a.json") == 0o640
        os.umask(0o022)
        atomic_write(tmp_path / "b.onnx", lambda f: f.write(b"x"))
        with open(tmp_path / "c.onnx", "wb") as f:  # what a plain open() gives, for comparison
            f.write(b"x")
        assert _mode(tmp_path / "b.onnx") == _mode(tmp_path / "c.onnx") == 0o644
    finally:
        os.umask(old)


def test_replaced_file_keeps_its_mode_and_failure_leaves_no_temp(tmp_path):
    p = tmp_path / "model.pth"
    p.write_bytes(b"old")
    os.chmod(p, 0o600)
    atomic_write(p, lambda f: f.write(b"new"))
    assert p.read_bytes() == b"new" and _mode(p) == 0o600

    def boom(f):
        f.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        atomic_write(p, boom)
    assert p.read_bytes() == b"new" and sorted(x.name for x in tmp_path.iterdir()) == ["model.pth"]
