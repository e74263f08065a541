#!/usr/bin/env bash
# Build the C++ sources in csrc/ (CPU kernels, ONNX Runtime custom-op library, C++ tests) into
# build/csrc (Release, -O3) and put the libraries at stable paths: build/lib/libclean_deploy_ort.so (where
# clean_deploy.runtime.ort_ops looks for it) and build/lib/libclean_deploy_kernels.so (the C interface of
# the CPU kernels that the training path loads: clean_deploy.native). Run by `make setup`.
# Idempotent: the ORT headers are fetched once, cmake configures once, and ninja/make rebuild only
# what changed (a no-op run takes well under a second).
# CUDA kernels (csrc/cuda: libclean_deploy_cuda.a/.so, test_cuda_kernels) are compiled whenever nvcc is
# found (no GPU needed; architectures 87;90 unless CMAKE_CUDA_ARCHITECTURES/CUDAARCHS say otherwise);
# without nvcc they are skipped with a message, never an error.
# Environment: CMAKE (default cmake), CLEAN_DEPLOY_BUILD_JOBS (default: number of cores),
#              CLEAN_DEPLOY_CMAKE_ARGS (extra configure arguments),
#              CLEAN_DEPLOY_WITH_CUDA (auto (default): build the CUDA kernels iff nvcc is found; 0: never),
#              CUDACXX (nvcc to use; default: nvcc on PATH, else /usr/local/cuda/bin/nvcc).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmake_bin=${CMAKE:-cmake}
build=build/csrc

command -v "$cmake_bin" >/dev/null || { echo "build_csrc: cmake not found (needs cmake >= 3.18 and a C++17 compiler)" >&2; exit 1; }
bash scripts/fetch_ort_headers.sh

# CUDA: on when nvcc is found (unless CLEAN_DEPLOY_WITH_CUDA=0)
with_cuda=OFF
cuda_args=()
case "${CLEAN_DEPLOY_WITH_CUDA:-auto}" in
  0|OFF|off|no) echo "build_csrc: CLEAN_DEPLOY_WITH_CUDA=${CLEAN_DEPLOY_WITH_CUDA}: not building the CUDA kernels (csrc/cuda)" ;;
  *)
    nvcc_bin=${CUDACXX:-$(command -v nvcc || true)}
    if [ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc_bin=/usr/local/cuda/bin/nvcc; fi
    if [ -n "$nvcc_bin" ] && [ -x "$nvcc_bin" ]; then
      with_cuda=ON
      grep -q '^CMAKE_CUDA_COMPILER:' "$build/CMakeCache.txt" 2>/dev/null || cuda_args=(-DCMAKE_CUDA_COMPILER="$nvcc_bin")
    else
      echo "build_csrc: nvcc not found: skipping the CUDA kernels (csrc/cuda); install the CUDA toolkit" \
           "or set CUDACXX=/path/to/nvcc to build them (no GPU is needed to compile)"
    fi ;;
esac

cached_cuda=$(sed -n 's/^CLEAN_DEPLOY_WITH_CUDA:BOOL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
if [ ! -f "$build/CMakeCache.txt" ] || [ "$cached_cuda" != "$with_cuda" ]; then
  gen=()
  if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then gen=(-G Ninja); fi
  # shellcheck disable=SC2086
  "$cmake_bin" -S csrc -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DORT_INCLUDE_DIR="$root/build/third_party/onnxruntime/include" -DCLEAN_DEPLOY_WITH_CUDA="$with_cuda" \
    "${cuda_args[@]}" ${CLEAN_DEPLOY_CMAKE_ARGS:-} >/dev/null
fi
jobs=${CLEAN_DEPLOY_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
cuda_stamp=$build/cuda/libclean_deploy_cuda.a
cuda_before=$(stat -c %Y "$cuda_stamp" 2>/dev/null || echo 0)
"$cmake_bin" --build "$build" -j "$jobs" | { grep -vE '^\[[0-9]+/[0-9]+\]|^ninja: no work to do|^-- ' || true; }
if [ "$with_cuda" = ON ]; then
  for f in "$cuda_stamp" "$build/cuda/libclean_deploy_cuda.so" "$build/cuda/test_cuda_kernels"; do
    [ -f "$f" ] || { echo "build_csrc: $f was not built" >&2; exit 1; }
  done
  if [ "$(stat -c %Y "$cuda_stamp")" != "$cuda_before" ]; then
    echo "build_csrc: built the CUDA kernels ($build/cuda: libclean_deploy_cuda.a, libclean_deploy_cuda.so, test_cuda_kernels)"
  fi
fi

mkdir -p build/lib
for name in libclean_deploy_ort.so libclean_deploy_kernels.so; do
  lib=$build/$name
  [ -f "$lib" ] || { echo "build_csrc: $lib was not built" >&2; exit 1; }
  if ! cmp -s "$lib" "build/lib/$name"; then
    # copy then rename: a process that has the old library loaded keeps its (unlinked) file
    cp "$lib" "build/lib/.$name.tmp"
    mv -f "build/lib/.$name.tmp" "build/lib/$name"
    echo "build_csrc: built build/lib/$name"
  fi
done
