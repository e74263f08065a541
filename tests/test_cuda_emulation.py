"""The CUDA kernels' logic without a GPU: csrc/cuda/tests/emu/run_emulation.sh converts the .cu
sources to host loops and runs the unchanged test_cuda_kernels.cpp against the CPU kernels. It
needs only g++ and the CPU kernel library that `make setup` builds, so it always runs (a missing
library is a failure, not a skip)."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cuda_kernels_pass_in_cpu_emulation(tmp_path):
    assert (ROOT / "build" / "csrc" / "libclean_deploy_cpu.a").is_file(), "run `make setup` (scripts/build_csrc.sh)"
    res = subprocess.run(["bash", str(ROOT / "csrc/cuda/tests/emu/run_emulation.sh"), str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    m = re.search(r"test_cuda_kernels: (\d+) checks, (\d+) failed", out)
    assert m, out[-3000:]
    checks, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and checks >= 171, out[-3000:]
    assert "SKIPPED" not in out
