// clean_deploy C++ sample: FOV and range crops (see crop.h).
#include "crop.h"

#include <cstring>

namespace clean_deploy {
namespace sample {

namespace {

template <class Keep>
void compact(PointCloud& cloud, Keep keep) {
  const size_t n = cloud.size();
  float* d = cloud.data.data();
  size_t w = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!keep(d + 4 * i)) continue;
    if (w != i) std::memmove(d + 4 * w, d + 4 * i, 4 * sizeof(float));
    ++w;
  }
  cloud.data.resize(4 * w);
}

}  // namespace

void crop_to_camera_fov(PointCloud& cloud, const Calibration& calib, ImageSize image) {
  const double w = image.width, h = image.height;
  compact(cloud, [&](const float* p) {
    const double velo[3] = {p[0], p[1], p[2]};
    double rect[3], hom[3];
    calib.lidar_to_rect(velo, rect);
    calib.rect_to_image(rect, hom);
    const double depth = hom[2];
    if (!(depth > 0)) return false;
    const double u = hom[0] / depth, v = hom[1] / depth;
    return u >= 0 && u < w && v >= 0 && v < h;
  });
}

void crop_to_range(PointCloud& cloud, const std::array<float, 6>& r) {
  compact(cloud, [&](const float* p) {
    return p[0] >= r[0] && p[1] >= r[1] && p[2] >= r[2] && p[0] < r[3] && p[1] < r[4] && p[2] < r[5];
  });
}

}  // namespace sample
}  // namespace clean_deploy
