#!/usr/bin/env bash
# Fetch the ONNX Runtime C/C++ headers (the pip wheel ships none) into
# build/third_party/onnxruntime/include, from Debian trixie's libonnxruntime-dev .deb.
#
# The .deb is downloaded alone (nothing is installed) with a private apt configuration for trixie
# (same mirror and keyring as the system's bookworm sources), then unpacked with `dpkg -x`.
# Idempotent: does nothing when the headers are already there. Set ORT_HEADERS_DIR to a folder
# holding onnxruntime_cxx_api.h (and friends) to use headers from elsewhere instead.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/third_party/onnxruntime
inc=$dest/include
want=(onnxruntime_c_api.h onnxruntime_cxx_api.h onnxruntime_cxx_inline.h)

have_all() {
  local d=$1 h
  for h in "${want[@]}"; do [ -f "$d/$h" ] || return 1; done
}

if [ -n "${ORT_HEADERS_DIR:-}" ]; then
  have_all "$ORT_HEADERS_DIR" || { echo "fetch_ort_headers: ORT_HEADERS_DIR=$ORT_HEADERS_DIR lacks ${want[*]}" >&2; exit 1; }
  mkdir -p "$inc" && cp -f "$ORT_HEADERS_DIR"/onnxruntime_*.h "$inc"/
  exit 0
fi
have_all "$inc" && exit 0

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
apt_dir=$(pwd)/$dest/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dest/deb"
cat > "$apt_dir/sources.list" <<SRC
deb [signed-by=$keyring] $mirror trixie main
SRC
apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
          -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

fail() {
  cat >&2 <<MSG
fetch_ort_headers: could not download Debian trixie's libonnxruntime-dev ($1).
  It carries the ONNX Runtime C/C++ headers needed to build csrc/ort (libclean_deploy_ort.so).
  Check access to $mirror, or put onnxruntime_c_api.h, onnxruntime_cxx_api.h and
  onnxruntime_cxx_inline.h (ONNX Runtime >= 1.16) in a folder and rerun with ORT_HEADERS_DIR=that/folder.
MSG
  exit 1
}

command -v apt-get >/dev/null && command -v dpkg >/dev/null || fail "apt-get/dpkg not found"
deb=$(ls "$dest"/deb/libonnxruntime-dev_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  echo "fetch_ort_headers: downloading libonnxruntime-dev (trixie) ..."
  apt-get "${apt_opts[@]}" update >"$apt_dir/update.log" 2>&1 || fail "apt-get update failed, see $apt_dir/update.log"
  (cd "$dest/deb" && apt-get "${apt_opts[@]}" download libonnxruntime-dev) >"$apt_dir/download.log" 2>&1 \
    || fail "apt-get download failed, see $apt_dir/download.log"
  deb=$(ls "$dest"/deb/libonnxruntime-dev_*.deb 2>/dev/null | head -n1 || true)
  [ -n "$deb" ] || fail "no .deb after apt-get download"
fi
rm -rf "$dest/pkg"
dpkg -x "$deb" "$dest/pkg" || fail "dpkg -x $deb failed"
src=$(dirname "$(find "$dest/pkg" -name onnxruntime_cxx_api.h | head -n1)")
[ -n "$src" ] && have_all "$src" || fail "headers not found in $deb"
mkdir -p "$inc"
cp -f "$src"/*.h "$inc"/
rm -rf "$apt_dir" "$dest/pkg"  # keep the .deb (cache) and the headers only
echo "fetch_ort_headers: ONNX Runtime headers in $inc ($(basename "$deb"))"
