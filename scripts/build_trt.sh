#!/usr/bin/env bash
# Compile the TensorRT side against every TensorRT header set found (no TensorRT library is needed):
#   build/trt/<version>/lib/libclean_deploy_trt_plugins.so   the plugin library (exports getCreators and
#                                                         setLoggerFinder only, does not link libnvinfer)
#   build/trt/<version>/bin/clean_deploy_infer            the C++ sample with its --engine path (libnvinfer
#                                                         is dlopen'ed when an engine is run)
# Header sets: CLEAN_DEPLOY_TRT_HEADERS (space-separated TensorRT roots, each holding include/NvInfer.h),
# else ../shared/third_party/tensorrt/* (the project's CI copies of TensorRT's public headers). None
# found: says so and exits 0 (TensorRT is optional; an installed TensorRT is built for with
# scripts/build_plugins.sh and TENSORRT_ROOT). A header set found here that fails to build is an error.
# Run by `make setup` after scripts/build_csrc.sh (whose libclean_deploy_cuda.a the plugins link, so no
# CUDA is compiled twice) and scripts/build_sample.sh (whose ONNX Runtime headers the sample needs).
# Warnings are errors in our TensorRT code; TensorRT's headers are system headers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmake_bin=${CMAKE:-cmake}
roots=()
if [ -n "${CLEAN_DEPLOY_TRT_HEADERS:-}" ]; then
  read -r -a roots <<<"$CLEAN_DEPLOY_TRT_HEADERS"
else
  for d in ../shared/third_party/tensorrt/*/; do
    [ -f "$d/include/NvInfer.h" ] && roots+=("$(cd "$d" && pwd)")
  done
fi
if [ ${#roots[@]} -eq 0 ]; then
  echo "build_trt: no TensorRT header sets in ../shared/third_party/tensorrt: nothing to compile here" \
       "(for an installed TensorRT: TENSORRT_ROOT=/path bash scripts/build_plugins.sh)"
  exit 0
fi
mkdir -p build
if command -v flock >/dev/null; then  # concurrent callers (pytest-xdist workers) build one at a time
  exec 9>build/.build_trt.lock
  flock 9
fi
nvcc_bin=${CUDACXX:-$(command -v nvcc || true)}
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
cuda_lib=$root/build/csrc/cuda/libclean_deploy_cuda.a
jobs=${CLEAN_DEPLOY_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
quiet() { grep -vE '^\[[0-9]+/[0-9]+\]|^ninja: no work to do|^-- |^$' || true; }
for trt in "${roots[@]}"; do
  [ -f "$trt/include/NvInfer.h" ] || { echo "build_trt: $trt/include/NvInfer.h missing" >&2; exit 1; }
  version=$(sed -n 's/^#define \(NV_TENSORRT_MAJOR\|TRT_MAJOR_ENTERPRISE\) \([0-9]*\).*/\2/p' "$trt/include/NvInferVersion.h" | head -1)
  minor=$(sed -n 's/^#define \(NV_TENSORRT_MINOR\|TRT_MINOR_ENTERPRISE\) \([0-9]*\).*/\2/p' "$trt/include/NvInferVersion.h" | head -1)
  patch=$(sed -n 's/^#define \(NV_TENSORRT_PATCH\|TRT_PATCH_ENTERPRISE\) \([0-9]*\).*/\2/p' "$trt/include/NvInferVersion.h" | head -1)
  tag=${version}.${minor}.${patch}
  out=build/trt/$tag
  mkdir -p "$out"
  args=(-DCMAKE_BUILD_TYPE=Release -DTENSORRT_ROOT="$trt" -DCLEAN_DEPLOY_REQUIRE_TENSORRT=ON -DCLEAN_DEPLOY_WERROR=ON)
  if [ -f "$cuda_lib" ]; then
    args+=(-DCLEAN_DEPLOY_CUDA_LIBRARY="$cuda_lib")
    [ -n "$nvcc_bin" ] && args+=(-DCUDAToolkit_ROOT="$(dirname "$(dirname "$(readlink -f "$nvcc_bin")")")")
  elif [ -n "$nvcc_bin" ]; then
    args+=(-DCMAKE_CUDA_COMPILER="$nvcc_bin")
  fi
  # configured = a build file exists (a failed configure leaves a CMakeCache.txt but none)
  configured() { [ -f "$1/build.ninja" ] || [ -f "$1/Makefile" ]; }
  configured "$out/plugins" || "$cmake_bin" -S plugins -B "$out/plugins" "${gen[@]}" "${args[@]}" | quiet
  "$cmake_bin" --build "$out/plugins" -j "$jobs" | quiet
  mkdir -p "$out/lib"
  # the layout the sample expects (<bin>/../lib): the plugins and, for --model, the ONNX Runtime op library
  for lib in "$out/plugins/libclean_deploy_trt_plugins.so" build/lib/libclean_deploy_ort.so; do
    [ -f "$lib" ] || continue
    name=$(basename "$lib")
    cmp -s "$lib" "$out/lib/$name" || { cp "$lib" "$out/lib/.$name.tmp" && mv -f "$out/lib/.$name.tmp" "$out/lib/$name"; }
  done
  if ! configured "$out/sample"; then
    py=${CLEAN_DEPLOY_PYTHON:-}
    [ -z "$py" ] && [ -x .venv/bin/python ] && py=$root/.venv/bin/python
    py_arg=()
    [ -n "$py" ] && py_arg=(-DCLEAN_DEPLOY_PYTHON="$py")
    "$cmake_bin" -S csrc/sample -B "$out/sample" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DORT_INCLUDE_DIR="$root/build/third_party/onnxruntime/include" -DCLEAN_DEPLOY_SAMPLE_BIN_DIR="$root/$out/bin" \
      -DCLEAN_DEPLOY_SAMPLE_BUILD_TESTS=OFF -DCLEAN_DEPLOY_SAMPLE_WITH_TENSORRT=ON -DTENSORRT_ROOT="$trt" \
      -DCLEAN_DEPLOY_SAMPLE_WERROR=ON \
      ${py_arg[@]+"${py_arg[@]}"} | quiet
  fi
  "$cmake_bin" --build "$out/sample" -j "$jobs" | quiet
  [ -x "$out/bin/clean_deploy_infer" ] || { echo "build_trt: $out/bin/clean_deploy_infer was not built" >&2; exit 1; }
  echo "build_trt: TensorRT $tag headers ($trt): built $out/lib/libclean_deploy_trt_plugins.so and $out/bin/clean_deploy_infer"
done
