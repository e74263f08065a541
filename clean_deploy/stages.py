"""Cached pipeline stages that know what made their output.

A :class:`Stage` names its output artifact, the artifacts it reads (``inputs``) and the settings
that decide its result (``params``). :func:`run_stage` writes ``<output>.stage.json`` with the
settings and the inputs' SHA-256 when the stage starts (``done: false``) and again when the output
exists (``done: true``). On a later call the stage is

* reused when its output exists and was made from the same settings and input bytes;
* resumed (run again; training stages continue their own checkpoints) when it was started with the
  same settings but has not finished;
* refused with a one-line :class:`StageMismatch` naming the stage and what changed, when its
  output, or a started run, came from other settings or other inputs. Nothing is overwritten: use
  another run directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from clean_deploy.atomic import atomic_write


class StageMismatch(ValueError):
    """A run directory holds a stage made from other settings or inputs."""


@dataclass
class Stage:
    name: str
    output: Path
    run: Callable[[], Any]
    params: dict = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()

    @property
    def record_path(self) -> Path:
        return self.output.with_name(self.output.name + ".stage.json")


_SHA_CACHE: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's contents; within one process a file whose path, inode, size, mtime and ctime
    are unchanged is not read again (a teacher checkpoint that several stages key on is hashed once).
    ctime changes on every write, also when the mtime is set back (``cp -p``, ``touch -r``)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _key(stage: Stage) -> dict:
    params = json.loads(json.dumps(stage.params, sort_keys=True, default=str))  # canonical, JSON types
    for p in stage.inputs:
        if not Path(p).is_file():
            raise FileNotFoundError(f"stage {stage.name!r}: input {p} does not exist")
    return {"params": params, "inputs": [file_sha256(Path(p)) for p in stage.inputs]}


def _differences(old: dict, new: dict, stage: Stage) -> list[str]:
    a, b = _flat(old.get("params", {})), _flat(new["params"])
    diffs = [f"{k} {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    old_in = old.get("inputs", [])
    for i, p in enumerate(stage.inputs):
        if i >= len(old_in) or old_in[i] != new["inputs"][i]:
            diffs.append(f"input {Path(p).name} has other contents")
    return diffs


def _write(stage: Stage, key: dict, done: bool, seconds: float | None = None) -> None:
    rec = {"stage": stage.name, **key, "done": done}
    if seconds is not None:
        rec["seconds"] = round(seconds, 3)
    data = (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(stage.record_path, lambda f: f.write(data))


def run_stage(stage: Stage) -> bool:
    """Run ``stage`` unless its output exists from the same settings and inputs; returns whether it ran."""
    key = _key(stage)
    rec = None
    if stage.record_path.is_file():
        try:
            rec = json.loads(stage.record_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StageMismatch(f"{stage.record_path}: unreadable stage record ({e})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("params"), dict) or not isinstance(rec.get("inputs"), list):
            raise StageMismatch(f"{stage.record_path}: not a stage record (expected an object with params and inputs)")
    elif stage.output.exists():
        raise StageMismatch(f"stage {stage.name!r}: {stage.output} exists without a record of the settings that "
                            f"made it ({stage.record_path.name}); use a new run directory")
    if rec is not None:
        diffs = _differences(rec, key, stage)
        if diffs:
            what = "made" if stage.output.exists() else "started"
            raise StageMismatch(f"stage {stage.name!r}: {stage.output} was {what} with other settings or inputs "
                                f"({'; '.join(diffs)}); use a new run directory")
        if stage.output.exists() and rec.get("done"):
            return False
    _write(stage, key, done=False)
    t0 = time.time()
    stage.run()
    if not stage.output.exists():
        raise RuntimeError(f"stage {stage.name!r} finished without writing {stage.output}")
    _write(stage, key, done=True, seconds=time.time() - t0)
    return True
