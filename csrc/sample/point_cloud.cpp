// clean_deploy C++ sample: KITTI .bin reader (see point_cloud.h); the same checks as
// clean_deploy.data.kitti.reader.read_points_file.
#include "point_cloud.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "error.h"

namespace clean_deploy {
namespace sample {

namespace fs = std::filesystem;

void read_kitti_bin(const std::string& path, PointCloud& out) {
  static_assert(sizeof(float) == 4, "float must be IEEE binary32");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw SampleError("velodyne file not found: " + path);
  const auto size = fs::file_size(path, ec);
  if (ec) throw SampleError("cannot stat " + path + ": " + ec.message());
  if (size % 16 != 0)
    throw SampleError(path + ": size " + std::to_string(size) +
                      " bytes is not a multiple of 16 (float32 x y z intensity); truncated or not a KITTI velodyne file");
  out.data.resize(size / 4);
  if (size > 0) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw SampleError("cannot open " + path + ": " + std::strerror(errno));
    const size_t got = std::fread(out.data.data(), 1, size, f);
    std::fclose(f);
    if (got != size) throw SampleError(path + ": read " + std::to_string(got) + " of " + std::to_string(size) + " bytes");
  }
  // KITTI files are little-endian float32, as this machine (x86-64 / aarch64) stores them
  const size_t n = out.size();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* p = out.point(i);
    if (!(std::isfinite(p[0]) && std::isfinite(p[1]) && std::isfinite(p[2]) && std::isfinite(p[3]))) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad)
    throw SampleError(path + ": " + std::to_string(bad) + " of " + std::to_string(n) +
                      " points have NaN/inf values (first at point " + std::to_string(first) + "); drop them before inference");
}

}  // namespace sample
}  // namespace clean_deploy
