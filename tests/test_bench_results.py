"""Typed benchmark results (clean_deploy/bench/results.py): the committed job results load into the
types and write back to the same JSON; the markdown renderer reproduces the committed table byte for
byte; percentiles against numpy; bad rows refused."""
import json
from pathlib import Path

import numpy as np
import pytest

from clean_deploy.bench.results import BenchResult, Latency, Percentiles, markdown_table
from clean_deploy.bench.run import bench_markdown

ROOT = Path(__file__).resolve().parents[1]
#: committed bench documents (benchmarks/results/int8/bench/ is an ignored intermediate)
DOCS = [ROOT / "benchmarks/results/deploy"]


@pytest.mark.parametrize("folder", DOCS, ids=lambda p: p.parent.name + "/" + p.name)
def test_stored_results_round_trip_and_render_unchanged(folder):
    doc = json.loads((folder / "bench.json").read_text())
    for r in doc["results"]:
        typed = BenchResult.from_dict(r)
        assert typed.to_dict() == r
        assert typed.latency.p50() == r["latency"]["stages_ms"]["total"]["p50"]
        assert typed.latency.stage("net").p99 == r["latency"]["stages_ms"]["net"]["p99"]
        assert typed.peak_memory_mb == r["memory"]["peak_inference_mb"]
    assert bench_markdown(doc) == (folder / "bench.md").read_text()


def test_percentiles_and_errors():
    v = np.random.default_rng(0).exponential(10.0, 101)
    p = Percentiles.of(v)
    assert (p.mean, p.p50, p.p90, p.p99) == pytest.approx((v.mean(), np.median(v), np.percentile(v, 90),
                                                           np.percentile(v, 99)))
    lat = Latency(101, 3, {"total": p}, 12.5)
    assert Latency.from_dict(json.loads(json.dumps(lat.to_dict()))) == lat
    with pytest.raises(KeyError, match=r"no stage 'net' \(stages: \['total'\]\)"):
        lat.p50("net")
    assert markdown_table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        markdown_table(["a", "b"], [[1]])
