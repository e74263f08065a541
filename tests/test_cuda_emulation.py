"""The CUDA kernels' logic without a GPU: csrc/cuda/tests/emu/run_emulation.sh converts the .cu
sources to host loops and runs the unchanged test_cuda_kernels.cpp against the CPU kernels;
run_plugin_emulation.sh runs the TensorRT plugins' enqueue paths on those emulated kernels. They
need only g++, the CPU kernel library that `make setup` builds and (plugins) TensorRT's public
headers, so they always run (a missing library or header set is a failure, not a skip)."""
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_counted(script: str, out_dir: Path, program: str, min_checks: int, timeout: int) -> str:
    """Runs one emulation script and asserts it built, ran and printed "<program>: N checks, 0 failed"
    with at least min_checks checks; returns its output."""
    assert (ROOT / "build" / "csrc" / "libclean_deploy_cpu.a").is_file(), "run `make setup` (scripts/build_csrc.sh)"
    res = subprocess.run(["bash", str(ROOT / "csrc/cuda/tests/emu" / script), str(out_dir)],
                         capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    m = re.search(rf"{program}: (\d+) checks, (\d+) failed", out)
    assert m, out[-3000:]
    checks, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and checks >= min_checks, out[-3000:]
    return out


def test_cuda_kernels_pass_in_cpu_emulation(tmp_path):
    out = run_counted("run_emulation.sh", tmp_path, "test_cuda_kernels", 171, 900)
    assert "SKIPPED" not in out


def test_trt_plugin_enqueue_passes_in_cpu_emulation(tmp_path):
    """The TensorRT plugins' enqueue paths without TensorRT's library or a GPU:
    csrc/cuda/tests/emu/run_plugin_emulation.sh compiles plugins/src against TensorRT 10.3.0's public
    headers with the emulated CUDA runtime, links the converted kernels, and plugins/tests/
    plugin_enqueue_emu.cpp drives each plugin as TensorRT's parser, builder and runtime would (it stands
    in for them), comparing the outputs with the CPU kernels; frames above a conv's max_out_rows must
    fail at enqueue with a message, invalid sites must be logged under CLEAN_DEPLOY_TRT_SYNC_CHECK=1
    (in a child process). Needs g++, the CPU kernel library and the headers in
    ../shared/third_party/tensorrt (or CLEAN_DEPLOY_EMU_TRT_ROOT): a missing one is a failure."""
    trt = Path(os.environ.get("CLEAN_DEPLOY_EMU_TRT_ROOT", ROOT.parent / "shared" / "third_party" / "tensorrt" / "10.3.0"))
    assert (trt / "include" / "NvInferRuntime.h").is_file(), f"TensorRT 10.3.0 headers missing in {trt}"
    out = run_counted("run_plugin_emulation.sh", tmp_path, "plugin_enqueue_emu", 1387, 600)
    # the over-cap frames (fused and split) really failed at enqueue, naming the plugin and layer
    assert out.count("enqueue failed as required") == 2, out[-3000:]
    # invalid sites were reported under CLEAN_DEPLOY_TRT_SYNC_CHECK=1, a valid frame was not
    assert out.count(" reported: [clean_deploy] ") == 4 and "nothing reported" in out, out[-3000:]
