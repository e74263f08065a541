"""Refactors keep behaviour: today's code reproduces the fingerprints written at commit 5b9f9f6
(before the component contracts, layer moves and one-config work of the architecture issue):
dense outputs, decoded candidates, detections, losses, CaKD losses, pruning importance and plan,
and the exported graph's detections on ONNX Runtime (see ``tests/behaviour.py``)."""
import json
from pathlib import Path

import pytest

from behaviour import compare, compute

FIXTURES = Path(__file__).parent / "fixtures"
#: the fingerprints depend on the float kernels torch and our library pick for the CPU (AVX-512 vs
#: AVX2 round differently, and a top-k over near-equal scores then picks other candidates): one file per
#: CPU capability. AVX512: written at 5b9f9f6. AVX2: written on an AVX2-only machine (2026-12-03) at
#: 1c40bf5, whose AVX-512 fingerprints match 5b9f9f6's, so both anchor the same behaviour.
FIXTURE_BY_CAPABILITY = {"AVX512": FIXTURES / "behaviour_5b9f9f6.json", "AVX2": FIXTURES / "behaviour_1c40bf5_avx2.json"}


def _fixture() -> Path:
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    if cap not in FIXTURE_BY_CAPABILITY:
        pytest.fail(f"no behaviour fingerprints for CPU capability {cap!r} (have {sorted(FIXTURE_BY_CAPABILITY)})")
    return FIXTURE_BY_CAPABILITY[cap]


FIXTURE = FIXTURE_BY_CAPABILITY["AVX512"]


@pytest.fixture(scope="module")
def fingerprints():
    return compute()


def test_behaviour_matches_the_reference_commit(fingerprints):
    ref = json.loads(_fixture().read_text())
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


def test_tie_order_free_fingerprint_ignores_only_the_order_of_equal_scores():
    import torch
    from behaviour import _fp, _tie_order_free

    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([[0.9, 0.7, 0.7, 0.7, 0.5, 0.5, 0.2]])
    d = {"scores": scores, "labels": torch.tensor([[0, 1, 0, 1, 2, 2, 0]]),
         "boxes": torch.randn(1, 7, 7, generator=g), "index": torch.arange(7)[None]}
    swapped = {k: v[:, [0, 3, 1, 2, 5, 4, 6]] for k, v in d.items()}  # permuted inside the ties only
    ref = {k: _fp(v) for k, v in _tie_order_free(d).items()}
    assert {k: _fp(v) for k, v in _tie_order_free(swapped).items()} == ref
    # the raw projection does see the swap, and a moved box still changes the fingerprint
    assert _fp(swapped["boxes"]) != _fp(d["boxes"])
    moved = {k: v.clone() for k, v in d.items()}
    moved["boxes"][0, 2, 0] += 1e-3
    assert _fp(_tie_order_free(moved)["boxes"]) != ref["boxes"]
    # candidates whose scores differ keep the score order
    assert _tie_order_free(d)["scores"][0].tolist() == sorted(scores[0].tolist(), reverse=True)
