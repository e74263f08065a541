#!/usr/bin/env bash
# The TensorRT plugins' enqueue paths WITHOUT a GPU and WITHOUT TensorRT's library: compiles
# plugins/src/*.cpp against TensorRT 10.3.0's public headers (../shared/third_party/tensorrt, or
# CLEAN_DEPLOY_EMU_TRT_ROOT) with the emulated CUDA runtime (cuda_runtime_api.h here) instead of
# CUDA's, links them with the CUDA kernels converted to host code exactly as run_emulation.sh does
# (instead of libclean_deploy_cuda.a) and with the driver plugins/tests/plugin_enqueue_emu.cpp, and
# runs it. The driver creates each plugin through the library's getCreators() with the fields
# TensorRT's ONNX parser would pass, makes the builder's calls (output types and shapes through a
# fake IExprBuilder, formats, configurePlugin, getWorkspaceSize), serialises and re-creates it, and
# runs enqueue on host buffers ("device" memory is host memory), comparing the outputs with the CPU
# kernels (libclean_deploy_cpu.a): fused and split sparse convs, redundancy elimination of anchor and
# centre heads, a frame above a conv's max_out_rows (must fail with a message) and, with
# CLEAN_DEPLOY_TRT_SYNC_CHECK=1, invalid sites (must be logged).
# Not covered: TensorRT's own builder/runtime/parser (the driver stands in for them), real CUDA
# (asynchrony, warp scheduling, CUB, the GPU's math library, CUB's real workspace sizes).
# Under a minute on 2 cores; run in CI by tests/test_cuda_emulation.py.
#   bash csrc/cuda/tests/emu/run_plugin_emulation.sh [OUT_DIR]   (after scripts/build_csrc.sh built clean_deploy_cpu)
# CLEAN_DEPLOY_BUILD_JOBS: parallel compiles (default: the number of CPUs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
out=${1:-$root/build/plugin_emu}
trt=${CLEAN_DEPLOY_EMU_TRT_ROOT:-$root/../shared/third_party/tensorrt/10.3.0}
cpu_lib=$root/build/csrc/libclean_deploy_cpu.a
[ -f "$cpu_lib" ] || { echo "run_plugin_emulation: $cpu_lib missing: run scripts/build_csrc.sh first" >&2; exit 1; }
[ -f "$trt/include/NvInferRuntime.h" ] || {
  echo "run_plugin_emulation: TensorRT headers missing ($trt/include/NvInferRuntime.h): set CLEAN_DEPLOY_EMU_TRT_ROOT" >&2
  exit 1
}
mkdir -p "$out/obj"
rm -f "$out"/obj/*.o
# the kernels: converted .cu files + status.cpp, as run_emulation.sh builds them
kflags=(-std=c++20 -O2 -ffp-contract=off -pthread -I"$here" -I"$root/csrc/include" -I"$root/csrc/cuda/include"
        -I"$root/csrc/cuda/src")
# the plugins and the driver: TensorRT's headers as system headers, our code with the CMake build's
# warnings as errors; cuda_runtime_api.h resolves to the shim in $here
pflags=(-std=c++17 -O2 -pthread -Wall -Wextra -Wno-unused-parameter -Werror -isystem "$trt/include" -I"$here"
        -I"$root/csrc/cuda/include" -I"$root/plugins/src" -I"$root/csrc/include")
jobs=${CLEAN_DEPLOY_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
pids=()
# runs a compile in the background, at most $jobs at a time; a failed compile fails the script
spawn() {
  "$@" & pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
}
for f in rulebook gemm redundancy; do
  python3 "$here/convert.py" "$root/csrc/cuda/src/$f.cu" "$out/$f.cpp"
  spawn g++ "${kflags[@]}" -include "$here/cuda_emu.h" -c "$out/$f.cpp" -o "$out/obj/kernel_$f.o"
done
spawn g++ "${kflags[@]}" -c "$root/csrc/cuda/src/status.cpp" -o "$out/obj/kernel_status.o"
for src in "$root"/plugins/src/*.cpp; do
  spawn g++ "${pflags[@]}" -c "$src" -o "$out/obj/plugin_$(basename "$src" .cpp).o"
done
spawn g++ "${pflags[@]}" -c "$root/plugins/tests/plugin_enqueue_emu.cpp" -o "$out/obj/driver.o"
for p in "${pids[@]}"; do wait "$p"; done
g++ -pthread "$out"/obj/*.o "$cpu_lib" -o "$out/plugin_enqueue_emu"
"$out/plugin_enqueue_emu"
