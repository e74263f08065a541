// clean_deploy C++ sample: KITTI velodyne .bin reader (float32 x y z intensity, 16 bytes a point).
#pragma once

#include <string>
#include <vector>

namespace clean_deploy {
namespace sample {

struct PointCloud {
  std::vector<float> data;  // N x 4, row-major: x y z intensity (LiDAR frame)
  size_t size() const { return data.size() / 4; }
  const float* point(size_t i) const { return data.data() + 4 * i; }
};

// Reads `path` into `out` (reusing its buffer). A 0-byte file is an empty cloud. SampleError when the
// file is missing, its size is not a multiple of 16 bytes (truncated) or a value is NaN/inf.
void read_kitti_bin(const std::string& path, PointCloud& out);

}  // namespace sample
}  // namespace clean_deploy
