"""benchmarks/ablation.py: a study of another student never shares (and so never replaces) the
default student's stored units, table or plot."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("ablation_bench", ROOT / "benchmarks" / "ablation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _protocol(mod, student):
    return mod.Protocol(student, "0" * 16, 12, 6, 4, 0.003, 8, 300, 500, 500, 1000)


def test_study_names(ablation):
    assert ablation.study_name(ablation.DEFAULT_STUDENT) == "ablation"
    assert ablation.study_name("centerpoint_fast@0.5x+iou+axis") == "ablation@centerpoint_fast@0.5x+iou+axis"
    with pytest.raises(SystemExit, match="--student"):
        ablation.study_name("centerpoint_fast/../x")


def test_another_student_keeps_its_own_units(ablation, tmp_path):
    args = SimpleNamespace(out=tmp_path, runs=tmp_path / "runs", student=ablation.DEFAULT_STUDENT)
    main = ablation.Ablation(args, _protocol(ablation, args.student), tmp_path / "t.pth")
    axis_args = SimpleNamespace(**{**vars(args), "student": "centerpoint_fast@0.5x+iou+axis"})
    axis = ablation.Ablation(axis_args, _protocol(ablation, axis_args.student), tmp_path / "t.pth")
    p_main, p_axis = main.result_path("plain", 0), axis.result_path("plain", 0)
    assert p_main != p_axis and p_main.parent != p_axis.parent
    p_main.parent.mkdir(parents=True)
    p_main.write_text(json.dumps({"row": "plain", "seed": 0, "protocol": main.protocol.to_dict()}))
    # the other study does not see the default student's unit (it would run it again and replace it)
    assert main.stored("plain", 0) is not None
    assert axis.stored("plain", 0) is None and not p_axis.exists()
    assert main.runs != axis.runs  # run directories are per protocol already
