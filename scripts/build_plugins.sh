#!/usr/bin/env bash
# Build the TensorRT plugin library build/plugins/libclean_deploy_trt_plugins.so (plugins/, docs/tensorrt.md)
# and copy it to build/lib/. Needs TensorRT >= 10 and nvcc; where TensorRT is missing it reports
# "TensorRT not found ... set TENSORRT_ROOT=..." and exits 0 (nothing is built, no stub).
# Environment: TENSORRT_ROOT (TensorRT install: include/NvInfer.h, lib/libnvinfer.so), CMAKE,
#              CUDACXX (nvcc), CLEAN_DEPLOY_BUILD_JOBS, CLEAN_DEPLOY_PLUGINS_CMAKE_ARGS (extra configure
#              arguments, e.g. -DCMAKE_CUDA_ARCHITECTURES=87 for Jetson Orin only).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake_bin=${CMAKE:-cmake}
build=build/plugins
command -v "$cmake_bin" >/dev/null || { echo "build_plugins: cmake not found (needs cmake >= 3.18)" >&2; exit 1; }

args=(-DCMAKE_BUILD_TYPE=Release)
[ -n "${TENSORRT_ROOT:-}" ] && args+=(-DTENSORRT_ROOT="$TENSORRT_ROOT")
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then args+=(-G Ninja); fi
# shellcheck disable=SC2086
if ! out=$("$cmake_bin" -S plugins -B "$build" "${args[@]}" ${CLEAN_DEPLOY_PLUGINS_CMAKE_ARGS:-} 2>&1); then
  echo "$out" >&2
  echo "build_plugins: configuring plugins/ failed" >&2
  exit 1
fi
if [ -f "$build/SKIPPED.txt" ]; then
  echo "build_plugins: $(cat "$build/SKIPPED.txt")"
  exit 0
fi
jobs=${CLEAN_DEPLOY_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
"$cmake_bin" --build "$build" -j "$jobs" | { grep -vE '^\[[0-9]+/[0-9]+\]|^ninja: no work to do' || true; }
lib=$build/libclean_deploy_trt_plugins.so
[ -f "$lib" ] || { echo "build_plugins: $lib was not built" >&2; exit 1; }
mkdir -p build/lib
cp "$lib" build/lib/.libclean_deploy_trt_plugins.so.tmp
mv -f build/lib/.libclean_deploy_trt_plugins.so.tmp build/lib/libclean_deploy_trt_plugins.so
echo "build_plugins: built build/lib/libclean_deploy_trt_plugins.so"
