"""The C++ embedding sample (csrc/sample: build/bin/clean_deploy_infer, built by
scripts/build_sample.sh in `make setup`) against the Python runtime: the same KITTI result files as
``OrtSession`` + ``detections_to_kitti`` on the trained students, bit-exact pre-processing (FOV and
range crops, spconv-semantics voxelisation incl. the voxel cap) and clear failures on bad inputs."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clean_deploy.data.kitti.reader import read_points_file
from clean_deploy.data.kitti.results import detections_to_kitti
from clean_deploy.data.preprocess import points_in_range_mask
from clean_deploy.data.voxelize import Voxelizer
from clean_deploy.export.onnx_export import export_onnx
from clean_deploy.geometry.calib import KITTI_IMAGE_SHAPE, Calibration
from clean_deploy.runtime import ort_ops
from clean_deploy.runtime.ort_session import OrtSession

try:
    LIB = ort_ops.library_path()
except FileNotFoundError as err:  # pragma: no cover - CI builds the library in `make setup`
    pytest.skip(str(err), allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
BINARY = REPO / "build" / "bin" / "clean_deploy_infer"
STUDENTS = ["second_fast@0.25x", "centerpoint_fast@0.25x"]
ANGLE_COLS = (3, 14)  # alpha, rotation_y in a KITTI line (after the type)


@pytest.fixture(scope="module")
def infer_bin() -> Path:
    """The sample binary (a no-op rebuild when `make setup` already built it)."""
    res = subprocess.run(["bash", "scripts/build_sample.sh"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"scripts/build_sample.sh failed:\n{res.stdout}\n{res.stderr}"
    assert BINARY.is_file()
    return BINARY


def test_sample_unit_tests(infer_bin):
    """csrc/sample/tests/test_sample_units.cpp: JSON, calib, voxeliser and KITTI-line edge cases."""
    exe = REPO / "build" / "sample" / "test_sample_units"
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "0 failed" in res.stdout, res.stdout + res.stderr


@pytest.fixture(scope="module")
def models(trained_students, tmp_path_factory) -> dict[str, Path]:
    out_dir = tmp_path_factory.mktemp("cpp_sample_models")
    return {name: export_onnx(trained_students[name][0], out_dir / f"{name.split('@')[0]}.onnx").onnx_path
            for name in STUDENTS}


def run(binary: Path, model: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(binary), "--model", str(model), "--custom-ops", str(LIB), "--threads", "2", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % (2 * math.pi)
    return np.minimum(d, 2 * math.pi - d)


def assert_same_kitti_lines(py_lines: list[str], cpp_lines: list[str], where: str) -> None:
    """Same objects in the same order: class equal, numbers within the 2-decimal rounding (angles
    modulo 2 pi), scores within 1e-3."""
    assert len(cpp_lines) == len(py_lines), f"{where}: {len(cpp_lines)} C++ vs {len(py_lines)} Python objects"
    for i, (a, b) in enumerate(zip(py_lines, cpp_lines)):
        fa, fb = a.split(), b.split()
        assert len(fb) == 16, f"{where}:{i + 1}: not a KITTI result line: {b!r}"
        assert fa[0] == fb[0], f"{where}:{i + 1}: class {fb[0]} vs {fa[0]}"
        va, vb = np.array(fa[1:15], float), np.array(fb[1:15], float)
        diff = np.abs(va - vb)
        for c in ANGLE_COLS:
            diff[c - 1] = _angle_diff(va[c - 1], vb[c - 1])
        assert diff.max() <= 0.01 + 1e-6, f"{where}:{i + 1}:\n  py  {a}\n  c++ {b}"
        assert abs(float(fa[15]) - float(fb[15])) <= 1e-3, f"{where}:{i + 1}: score\n  py  {a}\n  c++ {b}"


def assert_dump_equals(dump: Path, fid: str, points: np.ndarray, voxels, num, coords) -> None:
    got = {k: np.load(dump / f"{fid}_{k}.npy") for k in ("points", "voxels", "num_points", "coords")}
    ref = {"points": points, "voxels": voxels, "num_points": num, "coords": coords}
    for k, v in ref.items():
        v = np.asarray(v)
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, f"{fid} {k}: {got[k].shape} vs {v.shape}"
        assert np.array_equal(got[k], v), f"{fid} {k}: C++ and Python differ"


@pytest.mark.parametrize("name", STUDENTS)
def test_sample_matches_python_runtime(infer_bin, models, synth_data, tmp_path, name):
    """A folder of frames + calib folder: KITTI result files and network inputs as the Python runtime."""
    velo, calib_dir = synth_data / "training" / "velodyne", synth_data / "training" / "calib"
    out, dump = tmp_path / "results", tmp_path / "dump"
    res = run(infer_bin, models[name], "--bin", velo, "--calib", calib_dir, "--out", out, "--timing",
              "--dump-voxels", dump)
    for stage in ("load (bin + calib)", "pre-processing", "network", "write results"):
        assert f"[time] {stage}" in res.stdout
    assert "mean over" in res.stdout
    sess = OrtSession(models[name], threads=2)
    frames = sorted(p.stem for p in velo.glob("*.bin"))
    assert sorted(p.stem for p in out.glob("*.txt")) == frames
    total = 0
    for fid in frames:
        points = read_points_file(velo / f"{fid}.bin")
        calib = Calibration.from_file(calib_dir / f"{fid}.txt")
        batch = sess.pre(points, calib, KITTI_IMAGE_SHAPE)
        assert_dump_equals(dump, fid, batch["points"], batch["voxels"].numpy(), batch["voxel_num_points"].numpy(),
                           batch["voxel_coords"].numpy())
        det = sess(points, calib, KITTI_IMAGE_SHAPE)
        py = [o.to_line() for o in detections_to_kitti(det.boxes, det.scores, det.labels, sess.class_names, calib,
                                                       KITTI_IMAGE_SHAPE)]
        assert_same_kitti_lines(py, (out / f"{fid}.txt").read_text().splitlines(), f"{name} frame {fid}")
        total += len(py)
    assert total > 0, "the trained student must detect something for the comparison to mean anything"


def test_sample_without_calib_writes_lidar_boxes(infer_bin, models, synth_data, tmp_path):
    """No --calib: no FOV crop, one `type x y z l w h yaw score` line per detection (LiDAR frame)."""
    name = "second_fast@0.25x"
    bin_path = synth_data / "training" / "velodyne" / "000000.bin"
    (tmp_path / "res").mkdir()  # --out an existing folder: <id>.txt in it
    run(infer_bin, models[name], "--bin", bin_path, "--out", tmp_path / "res")
    sess = OrtSession(models[name], threads=2)
    det = sess(read_points_file(bin_path))
    lines = (tmp_path / "res" / "000000.txt").read_text().splitlines()
    assert len(lines) == len(det.boxes) > 0
    for line, box, score, label in zip(lines, det.boxes, det.scores, det.labels):
        f = line.split()
        assert f[0] == sess.class_names[label]
        np.testing.assert_allclose(np.array(f[1:8], float), box, atol=1e-4 + 1e-6)
        assert abs(float(f[8]) - score) <= 1e-4 + 1e-6


def test_sample_image_size_from_png_headers(infer_bin, models, synth_data, tmp_path):
    """--images: each frame's camera image size from image_2/<id>.png (FOV crop and 2D box clipping)."""
    import struct
    import zlib

    name, fid = "second_fast@0.25x", "000000"
    shape = (370, 1224)  # (H, W) of some KITTI drives
    images = tmp_path / "image_2"
    images.mkdir()
    ihdr = struct.pack(">IIBBBBB", shape[1], shape[0], 8, 2, 0, 0, 0)
    (images / f"{fid}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                                        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
    bin_path = synth_data / "training" / "velodyne" / f"{fid}.bin"
    calib_path = synth_data / "training" / "calib" / f"{fid}.txt"
    dump = tmp_path / "dump"
    run(infer_bin, models[name], "--bin", bin_path, "--calib", calib_path, "--images", images, "--out",
        tmp_path / "r.txt", "--dump-voxels", dump)
    sess = OrtSession(models[name], threads=2)
    points, calib = read_points_file(bin_path), Calibration.from_file(calib_path)
    batch = sess.pre(points, calib, shape)
    assert len(batch["points"]) != len(sess.pre(points, calib, KITTI_IMAGE_SHAPE)["points"])
    assert_dump_equals(dump, fid, batch["points"], batch["voxels"].numpy(), batch["voxel_num_points"].numpy(),
                       batch["voxel_coords"].numpy())
    det = sess(points, calib, shape)
    py = [o.to_line() for o in detections_to_kitti(det.boxes, det.scores, det.labels, sess.class_names, calib, shape)]
    assert_same_kitti_lines(py, (tmp_path / "r.txt").read_text().splitlines(), f"{name} frame {fid} {shape}")


def _crafted_cloud(sidecar: dict, seed: int = 0) -> np.ndarray:
    """Points stressing the voxeliser: outside every bound, exactly on min (kept) and max (dropped),
    on voxel boundaries, far more than max_points_per_voxel in a few voxels, in shuffled order."""
    pre = sidecar["preprocess"]
    lo = np.array(pre["point_cloud_range"][:3], np.float32)
    hi = np.array(pre["point_cloud_range"][3:], np.float32)
    vs = np.array(pre["voxel_size"], np.float32)
    g = np.random.default_rng(seed)
    span = hi - lo
    parts = [g.uniform(lo - 0.05 * span, hi + 0.05 * span, (3000, 3)).astype(np.float32)]
    # on voxel boundaries (float32 arithmetic, as a sensor driver would produce them)
    k = g.integers(0, 40, (600, 3)).astype(np.float32)
    parts.append((lo + k * vs).astype(np.float32))
    # exactly on the range bounds
    b = g.uniform(lo, hi, (300, 3)).astype(np.float32)
    for axis in range(3):
        on_min, on_max = b[:100].copy(), b[100:200].copy()
        on_min[:, axis], on_max[:, axis] = lo[axis], hi[axis]
        parts += [on_min, on_max]
    # crowded voxels: 40 points in each of 5 voxels
    centres = lo + (g.integers(0, 30, (5, 3)) + 0.5).astype(np.float32) * vs
    parts.append(np.repeat(centres, 40, 0) + g.uniform(-0.4, 0.4, (200, 3)).astype(np.float32) * vs)
    xyz = np.concatenate(parts).astype(np.float32)
    pts = np.concatenate([xyz, g.uniform(0, 1, (len(xyz), 1)).astype(np.float32)], 1)
    return pts[g.permutation(len(pts))]


def test_sample_voxeliser_matches_spconv(infer_bin, models, tmp_path):
    """Range crop + voxels exactly as clean_deploy.data.voxelize.Voxelizer (spconv PointToVoxel),
    also when the voxel cap truncates (--allow-voxel-overflow) or refuses (default) the cloud."""
    model = models["second_fast@0.25x"]
    sidecar = json.loads(model.with_suffix(".json").read_text())
    pre = sidecar["preprocess"]
    pts = _crafted_cloud(sidecar)
    bin_path = tmp_path / "crafted.bin"
    pts.tofile(bin_path)
    cropped = pts[points_in_range_mask(pts, pre["point_cloud_range"])]
    assert 0 < len(cropped) < len(pts)

    def reference(max_voxels: int):
        vox, coords, num = Voxelizer(pre["voxel_size"], pre["point_cloud_range"], pre["max_points_per_voxel"],
                                     max_voxels)(cropped)
        return vox, num, np.concatenate([np.zeros((len(coords), 1), np.int32), coords], 1)

    dump = tmp_path / "dump"
    run(infer_bin, model, "--bin", bin_path, "--out", tmp_path / "out.txt", "--dump-voxels", dump)
    vox, num, coords = reference(pre["max_voxels"])
    assert num.max() == pre["max_points_per_voxel"] and len(vox) < pre["max_voxels"]
    assert_dump_equals(dump, "crafted", cropped, vox, num, coords)

    # a sidecar with a small voxel cap: truncated like spconv when allowed, refused by default
    cap = 64
    small = json.loads(json.dumps(sidecar))
    small["preprocess"]["max_voxels"] = cap
    small_path = tmp_path / "small_cap.json"
    small_path.write_text(json.dumps(small))
    dump2 = tmp_path / "dump_cap"
    run(infer_bin, model, "--sidecar", small_path, "--bin", bin_path, "--out", tmp_path / "out_cap.txt",
        "--allow-voxel-overflow", "--dump-voxels", dump2)
    vox, num, coords = reference(cap)
    assert len(vox) == cap
    assert_dump_equals(dump2, "crafted", cropped, vox, num, coords)
    res = run(infer_bin, model, "--sidecar", small_path, "--bin", bin_path, "--out", tmp_path / "refused.txt",
              check=False)
    full = len(reference(10 * len(cropped))[0])
    assert res.returncode == 1 and f"fills {full} voxels" in res.stderr and f"max_voxels={cap}" in res.stderr, res.stderr
    assert not (tmp_path / "refused.txt").exists()


def test_sample_rejects_bad_inputs(infer_bin, models, synth_data, tmp_path):
    model = models["second_fast@0.25x"]
    calib_dir = synth_data / "training" / "calib"
    good = read_points_file(synth_data / "training" / "velodyne" / "000000.bin")

    def fails(args, message, code=1, model_path=model):
        res = run(infer_bin, model_path, *args, check=False)
        assert res.returncode == code, f"{args}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        assert message in res.stderr, f"{args}: {message!r} not in {res.stderr!r}"
        assert res.stderr.startswith("clean_deploy_infer: error: ")

    out = tmp_path / "out.txt"
    truncated = tmp_path / "000001.bin"
    truncated.write_bytes(good[:10].tobytes() + b"\0\0\0")
    fails(["--bin", truncated, "--out", out], "size 163 bytes is not a multiple of 16")
    nan = good[:100].copy()
    nan[7, 2] = np.nan
    nan_path = tmp_path / "nan.bin"
    nan.tofile(nan_path)
    fails(["--bin", nan_path, "--out", out], "1 of 100 points have NaN/inf values (first at point 7)")
    fails(["--bin", tmp_path / "missing.bin", "--out", out], "velodyne file not found")
    # calib: missing file, missing entry in a folder, malformed
    fails(["--bin", truncated, "--calib", tmp_path / "nope.txt", "--out", out], "calib file not found")
    frames = tmp_path / "velodyne"
    frames.mkdir()
    good.tofile(frames / "000000.bin")
    good.tofile(frames / "000042.bin")
    fails(["--bin", frames, "--calib", calib_dir, "--out", tmp_path / "res"], "calib file not found")
    assert not (tmp_path / "res").exists(), "a batch with a missing calib must fail before any frame"
    bad_calib = tmp_path / "bad_calib.txt"
    bad_calib.write_text("\n".join(ln for ln in (calib_dir / "000000.txt").read_text().splitlines()
                                   if not ln.startswith("P2")))
    fails(["--bin", frames / "000000.bin", "--calib", bad_calib, "--out", out], "missing calibration entries: P2")
    # model, sidecar, custom-op library
    fails(["--bin", frames / "000000.bin", "--out", out], "ONNX model not found", model_path=tmp_path / "none.onnx")
    fails(["--bin", frames / "000000.bin", "--out", out, "--sidecar", tmp_path / "none.json"], "sidecar not found")
    broken = tmp_path / "broken.json"
    broken.write_text(model.with_suffix(".json").read_text()[:200])
    fails(["--bin", frames / "000000.bin", "--out", out, "--sidecar", broken], "invalid JSON")
    fails(["--bin", frames / "000000.bin", "--out", out, "--custom-ops", tmp_path / "none.so"],
          "custom-op library not found")
    # command line
    fails(["--bin", frames / "000000.bin", "--out", out, "--frobnicate"], "unknown argument '--frobnicate'", code=2)
    fails(["--bin", frames / "000000.bin"], "--out is required", code=2)
    assert not out.exists()
    # an empty cloud is not an error: no objects (the network is not run), an empty result file
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    res = run(infer_bin, model, "--bin", empty, "--calib", calib_dir / "000000.txt", "--out", out)
    assert out.read_text() == "" and "0 detections" in res.stdout


def test_sample_as_bench_backend(infer_bin, models, trained_students, synth_data, tmp_path, monkeypatch):
    """`clean-deploy bench --cpp`: the sample's --timing-json rows give the latency of the timed frames
    (after the warm-up ones) and its KITTI files the same AP as the Python ONNX Runtime session."""
    from clean_deploy.bench.cpp_sample import SAMPLE_ENV, read_timing_json, run_cpp_job, sample_binary
    from clean_deploy.bench.run import backends_for, bench_markdown
    from clean_deploy.runtime.check import check_parity
    from clean_deploy.train.evaluate import mean_moderate_ap

    name = "centerpoint_fast@0.25x"
    model = str(models[name])
    res = run_cpp_job(model, synth_data, "val", frames=2, warmup=1, threads=2, work_dir=tmp_path / "job",
                      label="student [cpp]")
    lat = res["latency"]
    assert lat["frames"] == 2 and lat["warmup"] == 1
    timing = read_timing_json(tmp_path / "job" / "timing.jsonl")
    assert [r["id"] for r in timing] == ["a000000", "b000000", "b000001"]
    assert all(r["raw_points"] >= r["kept_points"] > 0 and r["voxels"] > 0 for r in timing)
    timed = timing[1:]
    assert lat["stages_ms"]["total"]["mean"] == pytest.approx(np.mean([r["pre_ms"] + r["net_ms"] for r in timed]))
    assert lat["throughput_fps"] == pytest.approx(2e3 / sum(r["pre_ms"] + r["net_ms"] for r in timed))
    # the C++ sample's KITTI files against the Python ONNX Runtime session's, frame by frame, then AP
    ort_pred = tmp_path / "ort_pred"
    rep = check_parity(trained_students[name][0], model, synth_data, "val", threads=2,
                       pred_dirs=(tmp_path / "torch_pred", ort_pred))
    assert set(rep.ap_onnx) >= {"Car", "Pedestrian", "Cyclist"}  # without pred_dirs it was {}: AP 0 == AP 0
    cpp_files = sorted((tmp_path / "job" / "pred").glob("*.txt"))
    assert [f.name for f in cpp_files] == sorted(f.name for f in ort_pred.glob("*.txt")) and cpp_files
    n_boxes = 0
    for f in cpp_files:
        a, b = f.read_text().splitlines(), (ort_pred / f.name).read_text().splitlines()
        assert len(a) == len(b), f.name
        n_boxes += len(a)
    assert n_boxes > 0  # the comparison compares detections, not two empty sets
    for cls in ("Car", "Pedestrian", "Cyclist"):
        for metric in ("3d", "bev"):
            for d in ("easy", "moderate", "hard"):
                assert res["ap"][cls][metric][d] == pytest.approx(rep.ap_onnx[cls][metric][d], abs=1e-6), (cls, metric, d)
    assert res["mean_moderate_3d"] == pytest.approx(mean_moderate_ap(rep.ap_onnx), abs=1e-6)
    # exported without a recorded source checkpoint: no params/FLOPs, the weights are the file
    assert res["params"] == 0 and res["weight_mb"] == pytest.approx(Path(model).stat().st_size / 2 ** 20)
    assert res["memory"]["peak_inference_mb"] is None
    doc = {"date": "d", "machine": "m", "threads": 2, "frames": 2, "split": "val", "warmup": 1, "results": [res]}
    assert "| student [cpp] |" in bench_markdown(doc) and bench_markdown(doc).rstrip().endswith("| - |")
    assert backends_for(model, "cpu", cpp=True) == ["onnxruntime", "cpp"]
    assert backends_for(model, "cpu") == ["onnxruntime"] and backends_for(model, "cuda", cpp=True) == ["onnxruntime"]
    monkeypatch.setenv(SAMPLE_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="build_sample.sh"):
        sample_binary()


def _trt_builds() -> list[Path]:
    from test_trt_build import ROOTS, version_of

    return [REPO / "build" / "trt" / version_of(r) / "bin" / "clean_deploy_infer" for r in ROOTS]


@pytest.mark.parametrize("exe", _trt_builds(), ids=lambda p: p.parent.parent.name)
def test_sample_built_with_tensorrt_runs_onnx_and_explains_a_missing_tensorrt(built_trt, infer_bin, models,
                                                                               synth_data, tmp_path, exe):
    """One binary for both backends: the --engine build runs an ONNX model exactly as the plain build
    (no TensorRT on this machine), and asked to run an engine it names the libnvinfer it could not load."""
    model = models["centerpoint_fast@0.25x"]
    velo, calib_dir = synth_data / "training" / "velodyne", synth_data / "training" / "calib"
    run(infer_bin, model, "--bin", velo, "--calib", calib_dir, "--out", tmp_path / "plain")
    run(exe, model, "--bin", velo, "--calib", calib_dir, "--out", tmp_path / "trt_build")
    frames = sorted(p.name for p in (tmp_path / "plain").glob("*.txt"))
    assert frames and frames == sorted(p.name for p in (tmp_path / "trt_build").glob("*.txt"))
    for f in frames:
        assert (tmp_path / "plain" / f).read_bytes() == (tmp_path / "trt_build" / f).read_bytes()
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not an engine")
    env = {k: v for k, v in os.environ.items() if k not in ("CLEAN_DEPLOY_NVINFER", "LD_LIBRARY_PATH")}
    major = exe.parent.parent.name.split(".")[0]
    res = subprocess.run([str(exe), "--engine", str(engine), "--sidecar", str(model.with_suffix(".json")),
                          "--bin", str(velo), "--calib", str(calib_dir), "--out", str(tmp_path / "e")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode != 0
    assert res.stderr.startswith(f"clean_deploy_infer: error: TensorRT {major}.x runtime not found"), res.stderr
    assert f"libnvinfer.so.{major}" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    env["CLEAN_DEPLOY_NVINFER"] = str(tmp_path / "nowhere" / "libnvinfer.so")
    res = subprocess.run([str(exe), "--engine", str(engine), "--sidecar", str(model.with_suffix(".json")),
                          "--bin", str(velo), "--out", str(tmp_path / "e")], capture_output=True, text=True,
                         timeout=60, env=env)
    assert res.returncode != 0 and "nowhere/libnvinfer.so" in res.stderr, res.stderr


@pytest.fixture(scope="module")
def built_trt():
    res = subprocess.run(["bash", "scripts/build_trt.sh"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"scripts/build_trt.sh failed:\n{res.stdout}\n{res.stderr}"
