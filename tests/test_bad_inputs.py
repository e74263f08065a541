"""Bad input through the real command line: one line on stderr naming the file and the problem, a
distinct non-zero exit code, no traceback (``--debug`` adds it); never a silently wrong answer.

Exit codes (clean_deploy.cli.main): 2 usage (click), 3 missing input, 4 invalid input."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clean_deploy.cli.main import EXIT_BAD_INPUT, EXIT_MISSING_INPUT


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    e = {**os.environ, **(env or {})}
    e.pop("CLEAN_DEPLOY_DEBUG", None) if env is None else None
    return subprocess.run([sys.executable, "-m", "clean_deploy", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=e)


def one_line_error(res: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    err = res.stderr.strip()
    assert "Traceback" not in err, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("clean-deploy: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


def _kitti(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    root = tmp_path / "kitti"
    (root / "ImageSets").mkdir(parents=True)
    (root / "training" / "label_2").mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(n)]
    (root / "ImageSets" / "val.txt").write_text("\n".join(ids) + "\n")
    car = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"
    preds = tmp_path / "pred"
    preds.mkdir()
    for i in ids:
        (root / "training" / "label_2" / f"{i}.txt").write_text(car + "\n")
        (preds / f"{i}.txt").write_text(car + " 0.9\n")
    return root, preds


def test_eval_missing_split_file(tmp_path):
    one_line_error(cli("eval", "--data", tmp_path / "nope", "--pred", tmp_path), EXIT_MISSING_INPUT,
                   "split file not found", str(tmp_path / "nope"))


def test_eval_missing_prediction_file_is_an_error_unless_allowed(tmp_path):
    root, preds = _kitti(tmp_path)
    (preds / "000001.txt").unlink()
    one_line_error(cli("eval", "--data", root, "--pred", preds), EXIT_MISSING_INPUT,
                   "1 of the 3 result files", "000001.txt", "--allow-missing")
    res = cli("eval", "--data", root, "--pred", preds, "--allow-missing")
    assert res.returncode == 0, res.stderr
    assert "1 of 3 result files missing" in res.stderr and "AP_R40" in res.stdout


def test_eval_duplicate_split_ids(tmp_path):
    root, preds = _kitti(tmp_path)
    (root / "ImageSets" / "val.txt").write_text("000000\n000001\n000000\n")
    one_line_error(cli("eval", "--data", root, "--pred", preds), EXIT_BAD_INPUT,
                   "val.txt:3", "'000000' is listed twice")


def test_eval_malformed_result_line_names_file_and_line(tmp_path):
    root, preds = _kitti(tmp_path)
    (preds / "000002.txt").write_text("Car 0 0 0 1 2 3\n")
    one_line_error(cli("eval", "--data", root, "--pred", preds), EXIT_BAD_INPUT, "000002.txt:1")


def test_debug_shows_the_traceback(tmp_path):
    res = cli("eval", "--data", tmp_path / "nope", "--pred", tmp_path, "--debug")
    assert res.returncode == EXIT_MISSING_INPUT and "Traceback" in res.stderr
    res = cli("eval", "--data", tmp_path / "nope", "--pred", tmp_path, env={"CLEAN_DEPLOY_DEBUG": "1"})
    assert res.returncode == EXIT_MISSING_INPUT and "Traceback" in res.stderr


def _student_ckpt(tmp_path: Path, poison: bool = False) -> Path:
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.models.checkpoint import save_checkpoint

    cfg = get_config("second_fast@0.25x")
    model = build_detector(cfg)
    if poison:
        with torch.no_grad():
            next(model.parameters())[0].fill_(float("nan"))
    path = tmp_path / ("nan.pth" if poison else "ok.pth")
    save_checkpoint(path, model, cfg)
    return path


def test_export_refuses_an_out_that_is_not_onnx(tmp_path):
    ckpt = _student_ckpt(tmp_path)
    out = tmp_path / "student.json"  # its sidecar would have been student.json too: written over the model
    one_line_error(cli("export", "--ckpt", ckpt, "--out", out), EXIT_BAD_INPUT, "must end in .onnx", "student.json")
    assert not out.exists()


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    ckpt = _student_ckpt(tmp_path, poison=True)
    one_line_error(cli("export", "--ckpt", ckpt, "--out", tmp_path / "m.onnx"), EXIT_BAD_INPUT,
                   "nan.pth", "NaN or infinite")


def test_checkpoint_of_another_width_is_one_line(tmp_path):
    """Weights of a 0.25x student under a 0.5x config: torch would print one line per tensor."""
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.models.checkpoint import save_checkpoint

    model = build_detector(get_config("second_fast@0.25x"))
    path = tmp_path / "other_width.pth"
    save_checkpoint(path, model, get_config("second_fast@0.5x"))
    one_line_error(cli("export", "--ckpt", path, "--out", tmp_path / "m.onnx"), EXIT_BAD_INPUT,
                   "other_width.pth", "weights do not fit the stored config", "tensors have another shape")


def test_missing_checkpoint(tmp_path):
    res = cli("export", "--ckpt", tmp_path / "none.pth", "--out", tmp_path / "m.onnx")
    one_line_error(res, EXIT_MISSING_INPUT, "none.pth")


@pytest.mark.parametrize("backend", ["nope"])
def test_unknown_sparse_backend(tmp_path, backend):
    ckpt = _student_ckpt(tmp_path)
    root, _ = _kitti(tmp_path)
    res = cli("test", "--ckpt", ckpt, "--data", root, "--pred-out", tmp_path / "p",
              env={"CLEAN_DEPLOY_SPARSE_BACKEND": backend})
    one_line_error(res, EXIT_BAD_INPUT, "CLEAN_DEPLOY_SPARSE_BACKEND", "'nope'", "clean_deploy, spconv")


def test_train_refuses_a_directory_holding_another_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model.pth").write_bytes(b"x")
    one_line_error(cli("train", "--config", "second_fast@0.25x", "--data", tmp_path, "--out", run, "--epochs", "1"),
                   EXIT_BAD_INPUT, str(run), "holds another run", "--resume", "--overwrite")
    assert (run / "model.pth").read_bytes() == b"x"  # nothing was touched
    one_line_error(cli("train", "--config", "second_fast@0.25x", "--data", tmp_path, "--out", run, "--resume"),
                   EXIT_BAD_INPUT, "--resume but there is no checkpoint", str(run / "checkpoints" / "latest.pth"),
                   "--overwrite")
    one_line_error(cli("distill", "--teacher", tmp_path / "t.pth", "--student", "second_fast@0.25x", "--data", tmp_path,
                       "--out", run, "--resume", "--overwrite"), EXIT_BAD_INPUT, "exclude each other")
    (tmp_path / "file").write_text("")
    one_line_error(cli("train", "--config", "second_fast@0.25x", "--data", tmp_path, "--out", tmp_path / "file"),
                   EXIT_BAD_INPUT, "is not a directory")


def test_overwrite_removes_only_the_runs_products(tmp_path):
    from clean_deploy.train.run_dir import prepare_run_dir, remove_stale_temp_files

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "pred_val").mkdir()
    for name in ("model.pth", "log.csv", "gt_database.npz", "eval_val.json", "notes.txt"):
        (run / name).write_text(name)
    prepare_run_dir(run, resume=False, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    prepare_run_dir(run, resume=False, overwrite=False)  # nothing of a run left: accepted
    (run / "checkpoints").mkdir()
    for name in ("latest.pth.abc123.tmp", "keep.tmp"):
        (run / "checkpoints" / name).write_text("")
    (run / "model.pth.x9.tmp").write_text("")
    (run / "other.data.tmp").write_text("")  # another program's temp file in the same folder
    removed = remove_stale_temp_files(run)
    assert sorted(p.name for p in removed) == ["latest.pth.abc123.tmp", "model.pth.x9.tmp"]
    assert (run / "checkpoints" / "keep.tmp").exists() and (run / "other.data.tmp").exists()


def test_gt_database_of_other_data_is_rebuilt(synth_data, tmp_path, capsys):
    """A gt_database.npz built from one dataset is not pasted into another one's training."""
    import shutil

    from clean_deploy.data.augment.gt_sampling import GTDatabase
    from clean_deploy.data.dataset import KittiDetectionDataset
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.loop import experiment_for

    db_path = tmp_path / "gt_database.npz"
    cfg = get_config("second_fast@0.25x")
    first = KittiDetectionDataset(experiment_for(cfg, synth_data, None, str(db_path)), cfg, split="train", training=True)
    n_first = len(first.sampler.database)
    assert n_first > 0 and db_path.is_file()
    other = tmp_path / "other"
    shutil.copytree(synth_data, other)
    for f in (other / "training" / "label_2").glob("*.txt"):
        f.write_text("")  # the same clouds, no objects
    capsys.readouterr()
    second = KittiDetectionDataset(experiment_for(cfg, other, None, str(db_path)), cfg, split="train", training=True)
    assert len(second.sampler.database) == 0
    assert "built from other data" in capsys.readouterr().out
    assert len(GTDatabase.load(db_path)) == 0
    again = KittiDetectionDataset(experiment_for(cfg, other, None, str(db_path)), cfg, split="train", training=True)
    assert len(again.sampler.database) == 0 and "built from other data" not in capsys.readouterr().out


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["preprocess"].update(voxel_size=[0.2, 0.1, 0.2]), ["grid_size[0] = 704", "round((max - min)"]),
    (lambda d: d["preprocess"].update(point_cloud_range=[0, -40, -2, 70.4, 40, 1]), ["grid_size[2] = 20"]),
    (lambda d: d["preprocess"].update(grid_size=[704, 800, 10], voxel_size=[0.1, 0.1, 0.4]),
     ["grid_size [704, 800, 10]", "sparse grid"]),
    (lambda d: d.update(class_names=["Car", "Pedestrian"]), ["2 classes", "post-processing 3"]),
    (lambda d: d["preprocess"].pop("max_voxels"), ["missing 'max_voxels'"]),
    (lambda d: d["preprocess"].update(max_voxels=-3), ["max_voxels: expected a positive integer"]),
    (lambda d: d.update(input_names=["a", "b", "c"]), ["input_names", "differ from the model's inputs"]),
])
def test_ort_session_refuses_a_sidecar_that_does_not_describe_the_model(tmp_path, edit, words):
    """An edited sidecar used to change the boxes silently; now it is refused naming file and field."""
    import json
    import shutil

    from clean_deploy.runtime.ort_session import OrtSession

    src = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "deploy" / "compressed.onnx"
    model = tmp_path / "m.onnx"
    shutil.copy(src, model)
    d = json.loads(src.with_suffix(".json").read_text())
    edit(d)
    model.with_suffix(".json").write_text(json.dumps(d))
    with pytest.raises(ValueError) as e:
        OrtSession(model, threads=1)
    msg = str(e.value)
    assert str(model.with_suffix(".json")) in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_ort_session_malformed_sidecar_names_the_file(tmp_path):
    import shutil

    from clean_deploy.runtime.ort_session import OrtSession

    src = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "deploy" / "compressed.onnx"
    model = tmp_path / "m.onnx"
    shutil.copy(src, model)
    model.with_suffix(".json").write_text('{"format": "clean_deploy.sidecar", ')
    with pytest.raises(ValueError, match=r"m\.json: not valid JSON"):
        OrtSession(model, threads=1)
    shutil.copy(src.with_suffix(".json"), model.with_suffix(".json"))
    assert OrtSession(model, threads=1).class_names == ["Car", "Pedestrian", "Cyclist"]  # the untouched pair loads


def test_voxel_cap_message_reports_the_clouds_real_voxel_count():
    """The message used to report a count capped at 10 x max_voxels."""
    import numpy as np

    from clean_deploy.data.voxelize import Voxelizer
    from clean_deploy.runtime.preprocess import PointCloudInputError, Preprocessor

    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform([0, -40, -3], [70.4, 40, 1], (60000, 3)), rng.uniform(0, 1, (60000, 1))], 1)
    pts = pts.astype(np.float32)
    pre = Preprocessor(None, True, voxel_size=[0.1, 0.1, 0.2], point_cloud_range=[0, -40, -3, 70.4, 40, 1],
                       max_points_per_voxel=5, max_voxels=100)
    truth = len(Voxelizer([0.1, 0.1, 0.2], [0, -40, -3, 70.4, 40, 1], 5, 10 ** 7)(pts)[0])
    assert truth > 10 * 100
    with pytest.raises(PointCloudInputError, match=f"fills {truth} voxels"):
        pre(pts)


def test_clouds_without_points_in_range_are_reported(synth_data, tmp_path, caplog, capsys):
    import logging
    import shutil

    import numpy as np

    from clean_deploy.runtime.ort_session import OrtSession

    src = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "deploy" / "compressed.onnx"
    sess = OrtSession(src, threads=1)
    far = np.array([[-50.0, 0.0, 0.0, 0.5], [200.0, 3.0, 0.0, 0.1]], np.float32)
    with caplog.at_level(logging.WARNING, logger="clean_deploy.runtime.ort_session"):
        dets = sess(far)
    assert len(dets.boxes) == 0
    assert "a cloud of 2 points has no point inside the model's range" in caplog.text

    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.evaluate import predict_split

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    val = (data / "ImageSets" / "val.txt").read_text().split()
    far.tofile(data / "training" / "velodyne" / f"{val[0]}.bin")
    torch.manual_seed(0)
    predict_split(build_detector(get_config("second_fast@0.25x")), data, "val", progress=False)
    out = capsys.readouterr().out
    assert f"predict val: 1 of {len(val)} frames have no point inside the model's range" in out and val[0] in out


@pytest.mark.parametrize("line, words", [
    ("Bus 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59",
     ["000001.txt:1", "unknown object type 'Bus'", "CLEAN_DEPLOY_LABEL_TYPES"]),
    ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 -1.67 3.64 -0.65 1.71 46.70 -1.59",
     ["000001.txt:1", "Car with dimensions h w l = 1.65 -1.67 3.64", "must be > 0"]),
])
def test_eval_refuses_labels_with_unknown_types_or_bad_dimensions(tmp_path, line, words):
    root, preds = _kitti(tmp_path)
    (root / "training" / "label_2" / "000001.txt").write_text(line + "\n")
    one_line_error(cli("eval", "--data", root, "--pred", preds), EXIT_BAD_INPUT, *words)


def test_extra_label_types_by_environment(tmp_path):
    root, preds = _kitti(tmp_path)
    bus = "Bus 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"
    (root / "training" / "label_2" / "000001.txt").write_text(bus + "\n")
    res = cli("eval", "--data", root, "--pred", preds, "--allow-missing",
              env={"CLEAN_DEPLOY_LABEL_TYPES": "Bus,Motorcycle"})
    assert res.returncode == 0, res.stderr
    dontcare = "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10"
    (root / "training" / "label_2" / "000002.txt").write_text(dontcare + "\n")
    assert cli("eval", "--data", root, "--pred", preds, env={"CLEAN_DEPLOY_LABEL_TYPES": "Bus"}).returncode == 0


def test_data_stats_reads_clouds_through_the_validating_reader(synth_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    first = sorted((data / "training" / "velodyne").glob("*.bin"))[0]
    first.write_bytes(first.read_bytes()[:-6])  # truncated
    one_line_error(cli("data", "stats", data), EXIT_BAD_INPUT, str(first), "not a multiple of 16")


def test_eval_prints_true_positive_errors(tmp_path):
    root, preds = _kitti(tmp_path)
    # frame 0's car found 0.5 m off in x and rotated by 0.1 rad; the others exact
    (preds / "000000.txt").write_text("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.15 1.71 46.70 -1.49 0.9\n")
    res = cli("eval", "--data", root, "--pred", preds, "--tp-errors", "--json", tmp_path / "ap.json")
    assert res.returncode == 0, res.stderr
    assert "translation" in res.stdout and "orientation" in res.stdout
    import json

    tp = json.loads((tmp_path / "ap.json").read_text())["_tp_errors"]["Car"]
    assert (tp["objects"], tp["true_positives"]) == (3, 3)
    assert abs(tp["translation"]["mean"] - 0.5 / 3) < 1e-9 and abs(tp["orientation"]["mean"] - 0.1 / 3) < 1e-9


def test_first_stage_of_a_one_stage_checkpoint_is_one_line(tmp_path):
    ckpt = _student_ckpt(tmp_path)
    root, _ = _kitti(tmp_path)
    one_line_error(cli("test", "--ckpt", ckpt, "--data", root, "--pred-out", tmp_path / "p", "--first-stage"),
                   EXIT_BAD_INPUT, "--first-stage", "ok.pth", "no second stage")
