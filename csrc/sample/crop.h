// clean_deploy C++ sample: point filters applied before voxelisation, in the Python runtime's order
// (clean_deploy.runtime.preprocess.Preprocessor.crop): camera-FOV crop (with a calib) then the
// detector's range. Both keep the input order of the surviving points.
#pragma once

#include <array>

#include "calib.h"
#include "point_cloud.h"

namespace clean_deploy {
namespace sample {

struct ImageSize {
  int width = 1242;  // KITTI camera 2
  int height = 375;
};

// Keeps the points projecting into the image of camera 2 with positive depth:
// depth > 0, 0 <= u < W, 0 <= v < H (double precision, as the Python fov_mask). In place.
void crop_to_camera_fov(PointCloud& cloud, const Calibration& calib, ImageSize image);

// Keeps the points with min <= p < max in x, y and z (float32 comparisons). In place.
void crop_to_range(PointCloud& cloud, const std::array<float, 6>& range);

}  // namespace sample
}  // namespace clean_deploy
