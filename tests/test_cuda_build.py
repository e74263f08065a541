"""The CUDA kernels (csrc/cuda) and the TensorRT plugin build (plugins/): the CUDA static library,
shared library and test binary exist where nvcc does (scripts/build_csrc.sh compiles them), the
test binary runs (GPU vs CPU kernels on a GPU machine; a clear SKIPPED line without a device), the
shared library exports the C API, and scripts/build_plugins.sh reports a missing TensorRT and exits 0
instead of failing or faking a library."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CUDA_BUILD = REPO / "build" / "csrc" / "cuda"


def _nvcc() -> str | None:
    """The nvcc scripts/build_csrc.sh would use (CUDACXX, PATH, /usr/local/cuda), if executable."""
    cand = os.environ.get("CUDACXX") or shutil.which("nvcc")
    if not cand and os.access("/usr/local/cuda/bin/nvcc", os.X_OK):
        cand = "/usr/local/cuda/bin/nvcc"
    return cand if cand and os.access(cand, os.X_OK) else None


def _has_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_nvcc = pytest.mark.skipif(
    _nvcc() is None or os.environ.get("CLEAN_DEPLOY_WITH_CUDA", "auto") in ("0", "OFF", "off", "no"),
    reason="nvcc not found (or CLEAN_DEPLOY_WITH_CUDA=0): scripts/build_csrc.sh skips the CUDA kernels")


@needs_nvcc
def test_cuda_artifacts_built():
    missing = [p.name for p in (CUDA_BUILD / "libclean_deploy_cuda.a", CUDA_BUILD / "libclean_deploy_cuda.so",
                                CUDA_BUILD / "test_cuda_kernels") if not p.is_file()]
    assert not missing, f"{missing} missing in {CUDA_BUILD}: run `bash scripts/build_csrc.sh` (make setup)"
    cache = (REPO / "build" / "csrc" / "CMakeCache.txt").read_text()
    assert "CLEAN_DEPLOY_WITH_CUDA:BOOL=ON" in cache
    archs = next(line.split("=", 1)[1] for line in cache.splitlines() if line.startswith("CMAKE_CUDA_ARCHITECTURES"))
    assert archs, "no CUDA architectures configured"


@needs_nvcc
def test_cuda_kernels_binary():
    exe = CUDA_BUILD / "test_cuda_kernels"
    if not exe.is_file():
        pytest.fail(f"{exe} missing: run `bash scripts/build_csrc.sh`")
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600 if _has_gpu() else 30)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "host-side checks, 0 failed" in out, out
    if not _has_gpu():
        assert "SKIPPED: no CUDA device" in out, out
    else:
        assert "SKIPPED" in out or ", 0 failed" in out.splitlines()[-1], out


@needs_nvcc
def test_cuda_shared_library_c_api():
    """The ctypes entry points used by benchmarks/sparse_conv_gpu.py; host-only calls work without a GPU."""
    lib_path = CUDA_BUILD / "libclean_deploy_cuda.so"
    if not lib_path.is_file():
        pytest.fail(f"{lib_path} missing: run `bash scripts/build_csrc.sh`")
    lib = ctypes.CDLL(str(lib_path))
    assert lib.cdCudaApiVersion() == 1000

    class Geometry(ctypes.Structure):
        _fields_ = [(n, ctypes.c_int32 * 3) for n in ("kernel", "stride", "padding", "dilation", "in_shape")] + [
            ("subm", ctypes.c_int32), ("max_batch", ctypes.c_int32)]

    def geometry(k, s, p, shape, subm):
        t = ctypes.c_int32 * 3
        return Geometry(t(*k), t(*s), t(*p), t(1, 1, 1), t(*shape), subm, 0)

    lib.cdSparseConvCheckGeometry.argtypes = [ctypes.POINTER(Geometry)]
    lib.cdSparseConvOutShape.argtypes = [ctypes.POINTER(Geometry), ctypes.POINTER(ctypes.c_int64)]
    lib.cdSparseConvMaxOutputsPerInput.argtypes = [ctypes.POINTER(Geometry)]
    lib.cdSparseConvMaxOutputsPerInput.restype = ctypes.c_int64
    lib.cdCudaLastError.restype = ctypes.c_char_p
    g = geometry((3, 3, 3), (2, 2, 2), (1, 1, 1), (41, 1600, 1408), 0)
    assert lib.cdSparseConvCheckGeometry(ctypes.byref(g)) == 0
    out = (ctypes.c_int64 * 3)()
    assert lib.cdSparseConvOutShape(ctypes.byref(g), out) == 0
    assert list(out) == [21, 800, 704]
    assert lib.cdSparseConvMaxOutputsPerInput(ctypes.byref(g)) == 8
    bad = geometry((3, 3, 3), (2, 1, 1), (0, 0, 0), (8, 8, 8), 1)  # strided submanifold conv
    assert lib.cdSparseConvCheckGeometry(ctypes.byref(bad)) == 1
    assert b"submanifold" in lib.cdCudaLastError()
    if not _has_gpu():
        assert lib.cdCudaDeviceCount() == 0
        assert lib.cdCudaLastError()


def test_build_plugins_reports_missing_tensorrt():
    env = dict(os.environ)
    root = env.get("TENSORRT_ROOT")
    have_trt = bool(root and (Path(root) / "include" / "NvInfer.h").is_file()) or Path("/usr/include/x86_64-linux-gnu/NvInfer.h").is_file()
    if have_trt:
        pytest.skip("TensorRT is installed here: scripts/build_plugins.sh builds the real library")
    proc = subprocess.run(["bash", "scripts/build_plugins.sh"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "TensorRT not found: skipping libclean_deploy_trt_plugins.so" in out, out
    assert "TENSORRT_ROOT" in out, out
    assert not (REPO / "build" / "plugins" / "libclean_deploy_trt_plugins.so").exists()


def test_prepare_onnx_rewrites_for_tensorrt(tmp_path):
    """plugins/prepare_onnx.py on a small hand-made graph: split sparse convs with a shared
    submanifold rulebook and a size-tensor output, empty RE inputs dropped."""
    import importlib.util

    import onnx
    from onnx import TensorProto, helper

    from clean_deploy.op_spec import IOU_AWARE_RE

    spec = importlib.util.spec_from_file_location("prepare_onnx", REPO / "plugins" / "prepare_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    geo = dict(kernel_size=[3, 3, 3], padding=[1, 1, 1], dilation=[1, 1, 1], spatial_shape=[8, 16, 16],
               activation="relu")
    re_attrs = dict(head_type="center", num_classes=1, pc_range=[0, -40, -3, 70.4, 40, 1], cell_size=[0.8, 0.8],
                    beta=[0.5], min_iou=[0.1], nms_thresh=[0.01], score_thresh=0.1, cross_class_thresh=0.3,
                    pre_max=100, max_output=50)
    nodes = [
        helper.make_node("SparseConvolution", ["f0", "i0", "w0", "b0"], ["f1", "i1"], name="c0", domain="clean_deploy",
                         stride=[1, 1, 1], subm=1, **geo),
        helper.make_node("SparseConvolution", ["f1", "i1", "w1", "b1"], ["f2", "i2"], name="c1", domain="clean_deploy",
                         stride=[1, 1, 1], subm=1, **geo),
        helper.make_node("SparseConvolution", ["f2", "i2", "w2", "b2"], ["f3", "i3"], name="c2", domain="clean_deploy",
                         stride=[2, 2, 2], subm=0, **geo),
        IOU_AWARE_RE.make_node(["hm", "reg", "", "", ""], ["boxes", "scores", "labels", "n"], "re", **re_attrs),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["d0", "d1"])
                                           for n in ("f0", "i0", "w0", "b0", "w1", "b1", "w2", "b2", "hm", "reg")],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["d0", "d1"]) for n in ("f3", "i3", "boxes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("clean_deploy", 1)])
    original = model.SerializeToString()
    out, summary = mod.prepare(model, "split", max_batch=1)
    onnx.checker.check_model(out)
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("SparseConvIndexPairs") == 2 and ops.count("SparseConvGemm") == 3
    assert summary["shared_rulebooks"] == 1 and summary["size_tensor_outputs"] == 1
    pairs = [n for n in out.graph.node if n.op_type == "SparseConvIndexPairs"]
    assert list(pairs[1].input) == ["i0"] and list(pairs[1].output) == ["i3", "c2.neighbors", "c2.num_out"]
    re_node = next(n for n in out.graph.node if n.op_type == "IoUAwareRedundancyElimination")
    attrs = {a.name: helper.get_attribute_value(a) for a in re_node.attribute}
    assert list(re_node.input) == ["hm", "reg"] and attrs["present_inputs"] == [1, 1, 0, 0, 0]
    assert all(helper.get_attribute_value(a) == b"clean_deploy" for n in out.graph.node for a in n.attribute
               if a.name == "plugin_namespace")
    fused, s2 = mod.prepare(onnx.load_from_string(original), "fused")
    assert [len(n.output) for n in fused.graph.node if n.op_type == "SparseConvolution"] == [2, 2, 3]
    # a node the plugins could not read is refused here, naming it (clean_deploy/op_spec.py)
    broken = onnx.load_from_string(original)
    del broken.graph.node[3].attribute[[a.name for a in broken.graph.node[3].attribute].index("max_output")]
    with pytest.raises(ValueError, match=r"IoUAwareRedundancyElimination node 're': attribute 'max_output' \(int\) is required"):
        mod.prepare(broken, "split")


@needs_nvcc
def test_gpu_check_dry_run_resolves_every_step(tmp_path):
    """benchmarks/gpu_check.sh --dry-run (what CI runs so that the GPU check cannot rot): the build, the
    kernel test binary, both timing scripts and the student's committed GPU inputs are all resolved
    and checked, and nothing is launched."""
    env = {**os.environ, "CLEAN_DEPLOY_GPU_OUT": str(tmp_path / "gpu")}
    res = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                         timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "gpu_student: dry run OK: 3 frames, 12 sparse layers, redundancy elimination" in res.stdout
    assert "[gpu_check] dry run OK: nothing was launched" in res.stdout
    assert not list((tmp_path / "gpu").glob("*.json"))  # nothing measured, nothing written
    bad = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--bogus"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument '--bogus'" in bad.stderr


def test_gpu_benchmark_frames_and_layers_without_spconv(monkeypatch):
    """The GPU machine has no spconv (its wheels do not fit the device's carry limit beside the repo):
    benchmarks/sparse_conv_gpu.py then voxelises with numpy and builds the layer specs from parameter
    holders. The numpy voxels must be spconv's (same sites in the same order, the same means, also
    when the voxel and points-per-voxel caps bite) and the specs the same layers."""
    import sys

    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import sparse_conv_cpu as scc
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from clean_deploy.data.synth.frame import generate_frame

    fr = generate_frame(0, 1)
    pts = fr.points[np.abs(fr.points[:, 1]) < fr.points[:, 0]]
    for max_points, max_voxels in ((5, 40000), (2, 3000)):
        vox = scc.Voxelizer(scc.VOXEL_SIZE, scc.PC_RANGE, max_points, max_voxels)
        voxels, coords, num = vox(pts)  # spconv's PointToVoxel
        feats, coords_np = scc._voxel_means_numpy(vox, pts)
        assert len(coords) > 1000 and (len(coords) == max_voxels) == (max_voxels == 3000)
        np.testing.assert_array_equal(coords_np, coords)
        np.testing.assert_allclose(feats, voxels.sum(1) / np.maximum(num, 1)[:, None], atol=1e-5)
    with_spconv = scc.specs(scc.build_spconv())
    feats_sp, idx_sp = scc.load_frame(1)
    monkeypatch.setattr(scc, "spconv", None)
    feats_np, idx_np = scc.load_frame(1)
    np.testing.assert_array_equal(idx_np, idx_sp)
    np.testing.assert_allclose(feats_np, feats_sp, atol=1e-5)
    without = scc.specs(scc.build_spconv())
    assert len(without) == len(with_spconv) == len(scc.LAYERS)
    for a, b in zip(without, with_spconv):
        assert a.weight.shape == b.weight.shape and a.subm == b.subm
        assert (list(a.stride), list(a.padding), list(a.dilation)) == (list(b.stride), list(b.padding), list(b.dilation))
        assert a.out_spatial_shape([41, 1600, 1408]) == b.out_spatial_shape([41, 1600, 1408])
        assert 0.5 < a.weight.std() / b.weight.std() < 2.0  # same initialisation scale


def test_gpu_report_renders_the_committed_run(tmp_path):
    """benchmarks/gpu_report.py: the committed benchmarks/results/gpu/README.md is the rendering of the
    committed JSON files (it cannot drift from them); the numbers in it are the JSON's; a missing file
    reads "not run"; a broken file is a one-line error naming it."""
    import json
    import sys

    src = REPO / "benchmarks" / "results" / "gpu"
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_report
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert gpu_report.render(src) == (src / "README.md").read_text()
    conv = json.loads((src / "sparse_conv_gpu.json").read_text())
    tests = json.loads((src / "cuda_kernel_tests.json").read_text())
    for d in (tmp_path / "a", tmp_path / "b"):
        shutil.copytree(src, d)
    (tmp_path / "b" / "student_gpu.json").unlink()
    assert gpu_report.main(["--dir", str(tmp_path / "b")]) == 0
    text = (tmp_path / "b" / "README.md").read_text()
    assert f"**{tests['checks']} checks, {tests['failed']} failed**" in text
    total = sum(r["ours_fp32"] for r in conv["per_layer_ms"])
    assert f"| **sum** | | | | {total:.3f} |" in text  # the sum row is the layers' sum
    for r in conv["per_layer_ms"]:
        assert f"| {r['layer']} | {r['cin']}>{r['cout']} | {r['n_in']} | {r['n_out']} | {r['ours_fp32']:.3f} |" in text
    student = text.split("## Exported student")[1]
    assert student.split("\n", 2)[2].startswith("not run")
    (tmp_path / "a" / "student_gpu.json").write_text("{broken")
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_report.py"), "--dir", str(tmp_path / "a")],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "student_gpu.json: not valid JSON" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
