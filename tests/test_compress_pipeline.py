"""The whole CLEAN pipeline runs end to end (tiny epochs) and writes its report, plot and a
compressed checkpoint whose post-processing is the IoU-aware redundancy elimination."""
import json

import pytest
import torch

from clean_deploy.compress.config import PruneConfig
from clean_deploy.pipeline import CompressConfig, compress
from clean_deploy.stages import StageMismatch
from clean_deploy.models.detector import build_detector
from clean_deploy.models.zoo import get_config
from clean_deploy.models.checkpoint import load_detector, save_checkpoint


def test_compress_pipeline_end_to_end(synth_data, tmp_path):
    torch.manual_seed(0)
    teacher_cfg = get_config("voxel_rcnn_fast@0.5x")
    save_checkpoint(tmp_path / "teacher.pth", build_detector(teacher_cfg), teacher_cfg)
    cfg = CompressConfig(student="second_fast@0.25x", distill_epochs=1, finetune_epochs=1, batch_size=2,
                         num_workers=0, latency_frames=1, prune=PruneConfig(calib_frames=2, calib_batch=2, method="taylor"))
    report = compress(tmp_path / "teacher.pth", synth_data, tmp_path / "run", cfg, target_flops=0.5, echo=lambda s: None)
    run = tmp_path / "run"
    for f in ("report.json", "report.md", "accuracy_vs_latency.png", "compressed.pth", "prune/prune_report.json"):
        assert (run / f).is_file(), f
    res = report["results"]
    assert res["compressed (+RE)"]["params"] < res["distilled"]["params"] < res["teacher"]["params"]
    assert 0.45 <= json.loads((run / "prune/prune_report.json").read_text())["flops_ratio"] <= 0.5
    model, ck = load_detector(run / "compressed.pth")
    assert model.cfg.post.redundancy is not None and ck["meta"]["kind"] == "compressed"
    assert report["ratios"]["params"] > 5
    # measured by the bench worker: latency and memory too; the report's columns follow the classes
    for v in res.values():
        assert v["latency_ms"] > 0 and v["memory"]["peak_inference_mb"] >= v["memory"]["weights_mb"] > 0
    assert res["teacher"]["memory"]["weights_mb"] > 5 * res["compressed (+RE)"]["memory"]["weights_mb"]
    header = (run / "report.md").read_text().splitlines()[0]
    assert header.startswith("| model | " + " | ".join(f"{c} 3D mod" for c in model.cfg.class_names) + " | mean mod 3D")
    assert header.endswith("| peak mem (MB) |") and report["ratios"]["memory"] > 0
    # resumable: a second call reuses every stage's output (no stage says it runs)
    said = []
    again = compress(tmp_path / "teacher.pth", synth_data, tmp_path / "run", cfg, target_flops=0.5, echo=said.append)
    assert not [s for s in said if s.startswith(("[1/5]", "[2/5]", "[3/5]", "[4/5]"))], said
    assert again["results"]["compressed (+RE)"]["params"] == res["compressed (+RE)"]["params"]
    # the same run directory with another budget is refused, naming the stage and the change
    with pytest.raises(StageMismatch, match=r"stage 'prune'.*prune\.target 0\.5 -> 0\.3"):
        compress(tmp_path / "teacher.pth", synth_data, tmp_path / "run", cfg, target_flops=0.3, echo=lambda s: None)
