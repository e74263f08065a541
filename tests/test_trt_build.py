"""The TensorRT side compiled against TensorRT's real public headers (no TensorRT library exists on
the CI machines): scripts/build_trt.sh builds, for every header set it finds, the plugin library and
the C++ sample with its --engine path. The plugin library must export exactly what
IPluginRegistry::loadLibrary looks up and must not need libnvinfer; the sample must run ONNX models
without TensorRT and say clearly that TensorRT is missing when asked to run an engine."""
from __future__ import annotations

import ctypes
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_HEADERS = REPO.parent / "shared" / "third_party" / "tensorrt"


def header_sets() -> list[Path]:
    """TensorRT roots scripts/build_trt.sh builds against (the same search order)."""
    if os.environ.get("CLEAN_DEPLOY_TRT_HEADERS"):
        return [Path(p) for p in os.environ["CLEAN_DEPLOY_TRT_HEADERS"].split()]
    return sorted(p.parent.parent for p in SHARED_HEADERS.glob("*/include/NvInfer.h"))


def version_of(root: Path) -> str:
    text = (root / "include" / "NvInferVersion.h").read_text()
    import re

    parts = []
    for what in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(rf"^#define (?:NV_TENSORRT_{what}|TRT_{what}_ENTERPRISE) (\d+)", text, re.M)
        parts.append(m.group(1))
    return ".".join(parts)


ROOTS = header_sets()
pytestmark = pytest.mark.skipif(not ROOTS, reason="no TensorRT headers here (CI has them in ../shared/third_party)")


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    """scripts/build_trt.sh (a no-op when `make setup` built everything); its outputs by version."""
    res = subprocess.run(["bash", "scripts/build_trt.sh"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"scripts/build_trt.sh failed:\n{res.stdout}\n{res.stderr}"
    return {version_of(r): REPO / "build" / "trt" / version_of(r) for r in ROOTS}


def dynamic(path: Path, what: str) -> list[str]:
    out = subprocess.run(["readelf", "--dyn-syms", "-d", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    if what == "needed":
        return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]
    syms = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[-1] for line in syms.splitlines() if line.strip())


@pytest.mark.parametrize("root", ROOTS, ids=[version_of(r) for r in ROOTS])
def test_plugin_library_exports_only_the_loader_entry_points(built, root):
    lib = built[version_of(root)] / "lib" / "libclean_deploy_trt_plugins.so"
    assert lib.is_file(), f"{lib} missing although TensorRT {version_of(root)} headers exist"
    assert dynamic(lib, "symbols") == ["getCreators", "setLoggerFinder"]
    needed = dynamic(lib, "needed")
    assert not [n for n in needed if "nvinfer" in n or "cudart" in n], needed
    # loads without TensorRT (RTLD_NOW: no unresolved TensorRT symbol) and hands out its four creators
    handle = ctypes.CDLL(str(lib), mode=os.RTLD_NOW | os.RTLD_LOCAL)
    get = handle.getCreators
    get.restype = ctypes.POINTER(ctypes.c_void_p)
    get.argtypes = [ctypes.POINTER(ctypes.c_int32)]
    n = ctypes.c_int32(-1)
    creators = get(ctypes.byref(n))
    assert n.value == 4
    assert all(creators[i] for i in range(n.value))
    assert len({creators[i] for i in range(n.value)}) == 4


@pytest.mark.parametrize("root", ROOTS, ids=[version_of(r) for r in ROOTS])
def test_sample_with_engine_path_links_no_tensorrt(built, root):
    """The --engine build of the sample loads libnvinfer at run time (test_cpp_sample.py runs it)."""
    exe = built[version_of(root)] / "bin" / "clean_deploy_infer"
    assert exe.is_file(), f"{exe} missing although TensorRT {version_of(root)} headers exist"
    needed = dynamic(exe, "needed")
    assert not [n for n in needed if "nvinfer" in n or "cudart" in n], needed
    assert "libdl" in " ".join(needed) or "dlopen" in subprocess.run(["nm", "-D", str(exe)], capture_output=True,
                                                                      text=True).stdout


DEPLOYED = REPO / "benchmarks" / "results" / "deploy" / "compressed.onnx"


def harness(root: Path) -> Path:
    return REPO / "build" / "trt" / version_of(root) / "plugins" / "plugin_harness"


@pytest.mark.parametrize("root", ROOTS, ids=[version_of(r) for r in ROOTS])
def test_plugin_harness_self_test(built, root):
    """Bounds against hand-computed values, constant opt, field round trip, formats, failures."""
    lib = built[version_of(root)] / "lib" / "libclean_deploy_trt_plugins.so"
    res = subprocess.run([str(harness(root)), str(lib), "--self-test"], capture_output=True, text=True, timeout=60)
    m = re.search(r"self-test: (\d+) checks, (\d+) failed", res.stdout)
    assert res.returncode == 0 and m and int(m.group(2)) == 0 and int(m.group(1)) >= 15, res.stdout + res.stderr


def harness_layers(model_path: Path, caps: dict, max_batch: int, grid: tuple[int, int, int] | None) -> str:
    """One harness line per SparseConvolution of an exported model, in graph order; ``grid`` replaces
    the first layer's spatial shape (later ones follow the strides)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(model_path))
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    lines, cur = [], list(grid) if grid else None
    for n in model.graph.node:
        if n.op_type != "SparseConvolution":
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        k, s = list(a["kernel_size"]), list(a.get("stride", [1, 1, 1]))
        p, d = list(a.get("padding", [0, 0, 0])), list(a.get("dilation", [1, 1, 1]))
        sp = list(a["spatial_shape"])
        subm = int(a.get("subm", 0))
        if cur is not None:
            sp = cur
            if not subm:
                cur = [(sp[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(3)]
        w = weights[n.input[2]]
        cap, opt = caps.get(n.name, (0, 0)) if not subm else (0, 0)
        lines.append(" ".join(map(str, [n.name, subm, *k, *s, *p, *d, *sp, max_batch, cap, opt, w[4], w[0]])))
    return "\n".join(lines) + "\n"


def run_harness(root: Path, lib: Path, layers: str, max_voxels: int, tmp_path: Path) -> dict:
    import json

    f = tmp_path / "layers.txt"
    f.write_text(layers)
    res = subprocess.run([str(harness(root)), str(lib), "--layers", str(f), "--max-voxels", str(max_voxels)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {"layers": rows[:-1], "total": rows[-1]}


@pytest.mark.parametrize("root", ROOTS, ids=[version_of(r) for r in ROOTS])
def test_deployed_student_sparse_conv_bounds(built, root, synth_data, tmp_path, capsys):
    """The exported CLEAN student (benchmarks/results/deploy/) as fused SparseConvolution plugins:
    the declared output bytes of its sparse convs (features + indices) plus the largest workspace stay
    under 1 GB, on its own grid with the rows capped from calibration frames and on KITTI's
    41 x 1600 x 1408 grid (40000 voxels) with the batch-1 grid caps alone; without any cap (the old
    bounds) they compound far beyond. Not counted: the dense layers, CUB's scratch (needs a GPU to
    query), and in the split graph the neighbour tables as separate tensors."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("prepare_onnx", REPO / "plugins" / "prepare_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lib = built[version_of(root)] / "lib" / "libclean_deploy_trt_plugins.so"
    measured = mod.measure_rows(DEPLOYED, synth_data, "train", 8)
    assert measured and all(v["max"] > 0 and v["frames"] >= 4 for v in measured.values()), measured
    caps = mod.row_caps(measured, 1.5)
    max_voxels = json.loads(DEPLOYED.with_suffix(".json").read_text())["preprocess"]["max_voxels"]
    own = run_harness(root, lib, harness_layers(DEPLOYED, caps, 1, None), max_voxels, tmp_path)
    kitti = run_harness(root, lib, harness_layers(DEPLOYED, {}, 1, (41, 1600, 1408)), 40000, tmp_path)
    old = run_harness(root, lib, harness_layers(DEPLOYED, {}, 0, (41, 1600, 1408)), 40000, tmp_path)
    gib = 2 ** 30
    for name, r in (("own grid, calibrated caps", own), ("KITTI grid, batch-1 caps", kitti), ("no caps", old)):
        with capsys.disabled():
            print(f"\n[TensorRT {version_of(root)} bound] {name}: outputs {r['total']['output_bytes'] / 2**20:.0f} MiB + "
                  f"largest workspace {r['total']['max_workspace_bytes'] / 2**20:.0f} MiB "
                  f"(CUB scratch of strided convs not included without a GPU)")
    assert own["total"]["bound_bytes"] < gib and kitti["total"]["bound_bytes"] < gib
    assert old["total"]["bound_bytes"] > 10 * gib
    # the calibrated caps bind: every strided layer's rows are at most ceil(1.5 x observed)
    strided = [x for x in own["layers"] if not x["subm"]]
    assert strided and all(x["out_rows"] <= caps[x["layer"]][0] for x in strided)
    assert all(x["opt"] == caps[x["layer"]][1] for x in strided)
    # and prepare_onnx writes them onto the plugins' nodes (split: the index-pair node; fused: the conv)
    import onnx
    from onnx import helper

    for sparse in ("split", "fused"):
        out, summary = mod.prepare(onnx.load(str(DEPLOYED)), sparse, 1, caps)
        assert summary["capped_convs"] == len(caps)
        got = {}
        for n in out.graph.node:
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            if "max_out_rows" in a:
                got[n.name.removesuffix(".index_pairs")] = (a["max_out_rows"], a["opt_rows"], a["max_batch"])
        assert got == {k: (c, o, 1) for k, (c, o) in caps.items()}
