"""Refactors keep behaviour: today's code reproduces the fingerprints written at commit 5b9f9f6
(before the component contracts, layer moves and one-config work of the architecture issue):
dense outputs, decoded candidates, detections, losses, CaKD losses, pruning importance and plan,
and the exported graph's detections on ONNX Runtime (see ``tests/behaviour.py``)."""
import json
from pathlib import Path

import pytest

from behaviour import compare, compute

FIXTURE = Path(__file__).parent / "fixtures" / "behaviour_5b9f9f6.json"


@pytest.fixture(scope="module")
def fingerprints():
    return compute()


def test_behaviour_matches_the_reference_commit(fingerprints):
    ref = json.loads(FIXTURE.read_text())
    errs = compare(ref, fingerprints)
    assert not errs, f"{len(errs)} differences, first: " + "; ".join(errs[:8])


def test_comparison_detects_a_changed_number():
    ref = json.loads(FIXTURE.read_text())
    name = "centerpoint_fast@0.25x+iou"
    changed = json.loads(json.dumps(ref))
    changed[name]["loss"]["loss_box"] *= 1 + 1e-4
    changed[name]["plan"]["keep"][next(iter(changed[name]["plan"]["keep"]))].pop()
    errs = compare(ref, changed)
    assert len(errs) == 2 and "loss_box" in errs[0] + errs[1]
