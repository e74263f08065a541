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
    from clean_deploy.train.checkpoint import save_checkpoint

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
