#!/usr/bin/env bash
# Logic check of the CUDA kernels WITHOUT a GPU: converts csrc/cuda/src/*.cu to plain C++ (kernel
# launches become loops over blocks; blocks whose kernels synchronise run their threads as
# std::threads with a barrier), replaces CUB and the CUDA runtime with host shims (cuda_emu.h,
# cuda_runtime_api.h) and runs the unchanged test_cuda_kernels.cpp against the CPU kernels.
# It checks the algorithms (rulebook sets/order, neighbour tables, GEMM accumulation order, decode,
# sort order, suppression masks, greedy scan); it does not model warp scheduling, memory ordering,
# CUDA's math library or real CUB. ~1-2 minutes on 2 cores; run in CI by tests/test_cuda_emulation.py.
# run_plugin_emulation.sh builds the same kernels the same way and runs the TensorRT plugins' enqueue
# paths on them (plugins/tests/plugin_enqueue_emu.cpp).
#   bash csrc/cuda/tests/emu/run_emulation.sh      (after scripts/build_csrc.sh built clean_deploy_cpu)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
out=${1:-$root/build/cuda_emu}
mkdir -p "$out/obj"
cpu_lib=$root/build/csrc/libclean_deploy_cpu.a
[ -f "$cpu_lib" ] || { echo "run_emulation: $cpu_lib missing: run scripts/build_csrc.sh first" >&2; exit 1; }
flags=(-std=c++20 -O2 -ffp-contract=off -pthread -I"$here" -I"$root/csrc/include" -I"$root/csrc/cuda/include"
       -I"$root/csrc/cuda/src")
pids=()
for f in rulebook gemm redundancy; do
  python3 "$here/convert.py" "$root/csrc/cuda/src/$f.cu" "$out/$f.cpp"
  g++ "${flags[@]}" -include "$here/cuda_emu.h" -c "$out/$f.cpp" -o "$out/obj/$f.o" & pids+=($!)
done
g++ "${flags[@]}" -c "$root/csrc/cuda/src/status.cpp" -o "$out/obj/status.o" & pids+=($!)
g++ "${flags[@]}" -c "$root/csrc/cuda/tests/test_cuda_kernels.cpp" -o "$out/obj/test.o" & pids+=($!)
# a failed compile must fail the script (a bare `wait` returns 0 whatever the jobs returned)
for p in "${pids[@]}"; do wait "$p"; done
g++ -pthread "$out"/obj/*.o "$cpu_lib" -o "$out/test_cuda_kernels_emu"
"$out/test_cuda_kernels_emu"
