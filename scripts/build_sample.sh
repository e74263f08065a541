#!/usr/bin/env bash
# Build the C++ embedding sample csrc/sample (clean_deploy_infer: KITTI .bin -> exported model on ONNX
# Runtime with libclean_deploy_ort.so -> KITTI results) into build/sample; the binary is
# build/bin/clean_deploy_infer. Run by `make setup` after scripts/build_csrc.sh.
# Idempotent: the ORT headers are fetched once, cmake configures once (again only when the ONNX
# Runtime library it linked has gone, e.g. a rebuilt .venv), ninja/make rebuild only what changed.
# Environment: CMAKE (default cmake), CLEAN_DEPLOY_BUILD_JOBS (default: number of cores),
#              CLEAN_DEPLOY_PYTHON (python with the onnxruntime wheel; default .venv/bin/python),
#              CLEAN_DEPLOY_SAMPLE_CMAKE_ARGS (extra configure arguments, e.g.
#              "-DCLEAN_DEPLOY_SAMPLE_WITH_TENSORRT=ON -DTENSORRT_ROOT=/opt/TensorRT" or -DONNXRUNTIME_LIB=...).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmake_bin=${CMAKE:-cmake}
build=build/sample

command -v "$cmake_bin" >/dev/null || { echo "build_sample: cmake not found (needs cmake >= 3.18 and a C++17 compiler)" >&2; exit 1; }
bash scripts/fetch_ort_headers.sh
mkdir -p build
if command -v flock >/dev/null; then  # concurrent callers (e.g. pytest-xdist workers) build one at a time
  exec 9>build/.build_sample.lock
  flock 9
fi

cache=$build/CMakeCache.txt
if [ -f "$cache" ]; then
  linked=$(sed -n 's/^CLEAN_DEPLOY_SAMPLE_ORT_LIBRARY:INTERNAL=//p' "$cache")
  if [ -z "$linked" ] || [ ! -f "$linked" ]; then
    echo "build_sample: the ONNX Runtime library linked before (${linked:-none}) is gone: reconfiguring"
    rm -f "$cache"
  fi
fi
if [ ! -f "$cache" ]; then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  py=${CLEAN_DEPLOY_PYTHON:-}
  [ -z "$py" ] && [ -x .venv/bin/python ] && py=$root/.venv/bin/python
  py_arg=()
  [ -n "$py" ] && py_arg=(-DCLEAN_DEPLOY_PYTHON="$py")
  # shellcheck disable=SC2086
  "$cmake_bin" -S csrc/sample -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DORT_INCLUDE_DIR="$root/build/third_party/onnxruntime/include" -DCLEAN_DEPLOY_SAMPLE_BIN_DIR="$root/build/bin" \
    "${py_arg[@]}" ${CLEAN_DEPLOY_SAMPLE_CMAKE_ARGS:-} | { grep -E 'clean_deploy sample|TensorRT' || true; }
fi
jobs=${CLEAN_DEPLOY_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
"$cmake_bin" --build "$build" -j "$jobs" | { grep -vE '^\[[0-9]+/[0-9]+\]|^ninja: no work to do|^-- ' || true; }

bin=build/bin/clean_deploy_infer
[ -x "$bin" ] || { echo "build_sample: $bin was not built" >&2; exit 1; }
