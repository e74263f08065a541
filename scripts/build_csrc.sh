#!/usr/bin/env bash
# Build the C++ sources in csrc/ (CPU kernels, ONNX Runtime custom-op library, C++ tests) into
# build/csrc (Release, -O3) and put the ORT library at a stable path: build/lib/libclean_deploy_ort.so
# (where clean_deploy.runtime.ort_ops looks for it). Run by `make setup`.
# Idempotent: the ORT headers are fetched once, cmake configures once, and ninja/make rebuild only
# what changed (a no-op run takes well under a second).
# Environment: CMAKE (default cmake), CLEAN_DEPLOY_BUILD_JOBS (default: number of cores),
#              CLEAN_DEPLOY_CMAKE_ARGS (extra configure arguments, e.g. -DCLEAN_DEPLOY_WITH_CUDA=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmake_bin=${CMAKE:-cmake}
build=build/csrc

command -v "$cmake_bin" >/dev/null || { echo "build_csrc: cmake not found (needs cmake >= 3.18 and a C++17 compiler)" >&2; exit 1; }
bash scripts/fetch_ort_headers.sh

if [ ! -f "$build/CMakeCache.txt" ]; then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  # shellcheck disable=SC2086
  "$cmake_bin" -S csrc -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DORT_INCLUDE_DIR="$root/build/third_party/onnxruntime/include" ${CLEAN_DEPLOY_CMAKE_ARGS:-} >/dev/null
fi
jobs=${CLEAN_DEPLOY_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
"$cmake_bin" --build "$build" -j "$jobs" | { grep -vE '^\[[0-9]+/[0-9]+\]|^ninja: no work to do|^-- ' || true; }

lib=$build/libclean_deploy_ort.so
[ -f "$lib" ] || { echo "build_csrc: $lib was not built" >&2; exit 1; }
mkdir -p build/lib
if ! cmp -s "$lib" build/lib/libclean_deploy_ort.so; then
  # copy then rename: a process that has the old library loaded keeps its (unlinked) file
  cp "$lib" build/lib/.libclean_deploy_ort.so.tmp
  mv -f build/lib/.libclean_deploy_ort.so.tmp build/lib/libclean_deploy_ort.so
  echo "build_csrc: built build/lib/libclean_deploy_ort.so"
fi
