"""The TensorRT side compiled against TensorRT's real public headers (no TensorRT library exists on
the CI machines): scripts/build_trt.sh builds, for every header set it finds, the plugin library and
the C++ sample with its --engine path. The plugin library must export exactly what
IPluginRegistry::loadLibrary looks up and must not need libnvinfer; the sample must run ONNX models
without TensorRT and say clearly that TensorRT is missing when asked to run an engine."""
from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_HEADERS = REPO.parent / "shared" / "third_party" / "tensorrt"


def header_sets() -> list[Path]:
    """TensorRT roots scripts/build_trt.sh builds against (the same search order)."""
    if os.environ.get("CLEAN_DEPLOY_TRT_HEADERS"):
        return [Path(p) for p in os.environ["CLEAN_DEPLOY_TRT_HEADERS"].split()]
    if os.environ.get("TENSORRT_ROOT"):
        return [Path(os.environ["TENSORRT_ROOT"])]
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
