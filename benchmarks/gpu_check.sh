#!/usr/bin/env bash
# One-command GPU check (about 5 minutes on one H100/H200, no network): builds csrc/cuda, runs the CUDA
# kernel tests against the CPU kernels (a "SKIPPED" is a failure when a GPU is present), times the
# sparse convolution (SECOND's layer stack, benchmarks/sparse_conv_gpu.py) and the exported student's
# sparse convs + redundancy elimination on real frames (benchmarks/gpu_student.py), and writes
# benchmarks/results/gpu/*.json.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  # anywhere (CI): every step resolved and built, nothing launched
#
# The student's frames come from a CPU machine (the GPU machine has no data set):
# benchmarks/gpu_inputs/student_frames.npz, made by `gpu_student.py prepare` (the dry run makes it when
# it is missing and the data set is there). Environment: PYTHON (default .venv/bin/python, else
# python3), CLEAN_DEPLOY_GPU_OUT (default benchmarks/results/gpu), CLEAN_DEPLOY_GPU_DATA (frames for
# `prepare`, default benchmarks/data/synth_test), spconv from /work/shared/gpu/pack-spconv-gpu.sh on
# PYTHONPATH when wanted (optional: its columns are skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$a' (expected --dry-run)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
out=${CLEAN_DEPLOY_GPU_OUT:-benchmarks/results/gpu}
inputs=benchmarks/gpu_inputs/student_frames.npz
say() { echo "[gpu_check] $*"; }
fail() { echo "gpu_check: $*" >&2; exit 1; }

# 0. the GPU
gpu=""
if command -v nvidia-smi >/dev/null 2>&1; then gpu=$(nvidia-smi -L 2>/dev/null | head -1 || true); fi
if [ -n "$gpu" ]; then say "GPU: $gpu"; elif [ "$dry" = 1 ]; then say "no GPU (dry run)";
else fail "no GPU: nvidia-smi lists none (use --dry-run to check the steps without one)"; fi
mkdir -p "$out"

# 1. build the CUDA kernels (and the CPU kernels their test compares with)
nvcc_bin=${CUDACXX:-$(command -v nvcc || true)}
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
[ -n "$nvcc_bin" ] || fail "nvcc not found (CUDACXX or PATH): the CUDA kernels cannot be built"
say "building csrc (CUDA with $nvcc_bin)"
CUDACXX="$nvcc_bin" CLEAN_DEPLOY_WITH_CUDA=auto bash scripts/build_csrc.sh
test_bin=build/csrc/cuda/test_cuda_kernels
cuda_lib=build/csrc/cuda/libclean_deploy_cuda.so
for f in "$test_bin" "$cuda_lib"; do [ -f "$f" ] || fail "build did not produce $f"; done
if [ "$dry" = 0 ]; then  # the toolchain, for the record (benchmarks/gpu_report.py renders it)
  "$py" - "$out/environment.json" "$gpu" "$nvcc_bin" <<'PYENV'
import json, platform, subprocess, sys
from datetime import date
def line(cmd, last=False):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[-1] if last else out[0]) if out else None
env = {"date": str(date.today()), "gpu": sys.argv[2],
       "driver": line(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
       "nvcc": line([sys.argv[3], "--version"], last=True), "c++": line(["c++", "--version"]),
       "cmake": line(["cmake", "--version"]), "python": platform.python_version()}
for mod in ("numpy", "torch", "onnxruntime"):
    try:
        env[mod] = __import__(mod).__version__
    except ImportError:
        env[mod] = None
json.dump(env, open(sys.argv[1], "w"), indent=2)
PYENV
fi

# 2. the student's frames (CPU side)
if [ ! -f "$inputs" ]; then
  data=${CLEAN_DEPLOY_GPU_DATA:-benchmarks/data/synth_test}
  [ -d "$data" ] || fail "$inputs missing and no data set at $data to make it from (run gpu_student.py prepare on a CPU machine)"
  "$py" benchmarks/gpu_student.py prepare --data "$data" --frames 3 --out "$inputs"
fi

if [ "$dry" = 1 ]; then
  say "dry run: would run $test_bin (no SKIPPED allowed on a GPU)"
  "$py" benchmarks/sparse_conv_gpu.py --help > /dev/null
  say "dry run: would run $py benchmarks/sparse_conv_gpu.py --frames 2 --reps 20 --out $out/sparse_conv_gpu.json"
  "$py" benchmarks/gpu_student.py run --inputs "$inputs" --lib "$cuda_lib" --out "$out/student_gpu.json" --dry-run
  say "dry run OK: nothing was launched"
  exit 0
fi

# 3. CUDA kernels vs CPU kernels
say "CUDA kernel tests"
log="$out/cuda_kernel_tests.txt"
set +e
"$test_bin" > "$log" 2>&1
rc=$?
set -e
tail -3 "$log"
grep -q "SKIPPED" "$log" && fail "$test_bin printed SKIPPED although a GPU is present ($gpu)"
[ "$rc" = 0 ] || fail "CUDA kernel tests failed (exit $rc; $log)"
"$py" - "$log" "$out/cuda_kernel_tests.json" "$gpu" <<'EOF'
import json, re, sys
from datetime import date
text = open(sys.argv[1]).read()
m = re.search(r"(\d+) checks?, (\d+) failed", text)
json.dump({"date": str(date.today()), "gpu": sys.argv[3], "checks": int(m.group(1)) if m else None,
           "failed": int(m.group(2)) if m else None, "tail": text.splitlines()[-5:]},
          open(sys.argv[2], "w"), indent=2)
EOF

# 4. timings
say "sparse conv: SECOND layer stack"
"$py" benchmarks/sparse_conv_gpu.py --frames 2 --reps 20 --lib "$cuda_lib" --out "$out/sparse_conv_gpu.json"
say "exported student: sparse convs + redundancy elimination on real frames"
"$py" benchmarks/gpu_student.py run --inputs "$inputs" --lib "$cuda_lib" --out "$out/student_gpu.json"
"$py" benchmarks/gpu_report.py --dir "$out"
say "done: $(ls "$out"/*.json | tr '\n' ' ')"
