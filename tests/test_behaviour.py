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
#: AVX2 round differently, and a top-k over near-equal scores then picks other candidates): files per CPU
#: capability, each from one vendor's machine. AVX512 on AMD: written at 5b9f9f6 (AMD EPYC). AVX2: written
#: on an AVX2-only AMD EPYC (2026-12-03) at 1c40bf5, whose AVX-512 fingerprints match 5b9f9f6's. AVX512 on
#: Intel: written on an Intel Xeon with AVX-512 (2026-12-04) at ad51b67, a commit whose fingerprints
#: matched 5b9f9f6's on AMD AVX-512 in CI; on that Xeon the AMD file differs in 9 numbers (other top-k
#: picks), at ad51b67 and after alike. All anchor the same behaviour: a machine passes when its
#: fingerprints equal one of its capability's files (its own vendor's first).
FIXTURES_BY_CAPABILITY = {
    "AVX512": [("AuthenticAMD", FIXTURES / "behaviour_5b9f9f6.json"),
               ("GenuineIntel", FIXTURES / "behaviour_ad51b67_avx512_intel.json")],
    "AVX2": [("AuthenticAMD", FIXTURES / "behaviour_1c40bf5_avx2.json")],
}


def _fixtures() -> list[Path]:
    """This CPU capability's fingerprint files, this machine's vendor's first."""
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    if cap not in FIXTURES_BY_CAPABILITY:
        pytest.fail(f"no behaviour fingerprints for CPU capability {cap!r} (have {sorted(FIXTURES_BY_CAPABILITY)})")
    from clean_deploy.bench.run import cpuinfo_field

    vendor = cpuinfo_field("vendor_id") or "unknown"
    files = FIXTURES_BY_CAPABILITY[cap]
    return [f for v, f in files if v == vendor] + [f for v, f in files if v != vendor]


FIXTURE = FIXTURES_BY_CAPABILITY["AVX512"][0][1]


@pytest.fixture(scope="module")
def fingerprints():
    return compute()


def test_behaviour_matches_the_reference_commit(fingerprints):
    files = _fixtures()
    errs = {f.name: compare(json.loads(f.read_text()), fingerprints) for f in files}
    first = errs[files[0].name]
    assert not all(errs.values()), (f"{len(first)} differences from {files[0].name} (and none of {sorted(errs)} "
                                    "matches), first: " + "; ".join(first[:8]))


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
