// clean_deploy C++ sample: detections -> KITTI result lines, as the Python evaluation writes them
// (clean_deploy.data.kitti.results.detections_to_kitti + KittiObject.to_line):
//   type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry score
// in camera-2 rectified coordinates (location = bottom centre), 2 decimals, score 4 decimals.
#pragma once

#include <string>
#include <vector>

#include "calib.h"
#include "crop.h"
#include "detector.h"

namespace clean_deploy {
namespace sample {

struct KittiObject {
  std::string type;
  double alpha = 0;
  double bbox[4] = {0, 0, 0, 0};  // x1 y1 x2 y2 (pixels, clipped to the image)
  double dimensions[3] = {0, 0, 0};  // h w l
  double location[3] = {0, 0, 0};    // x y z (rect camera, bottom centre)
  double rotation_y = 0;
  double score = 0;
};

// LiDAR box -> camera box (bottom centre through R0_rect * Tr_velo_to_cam, ry = -yaw - pi/2 wrapped
// to [-pi, pi)), 2D box of the 8 corners projected with P2 (depth clamped to >= 0.1) clipped to
// [0, W-1] x [0, H-1], alpha = ry - atan2(x, z) wrapped.
std::vector<KittiObject> detections_to_kitti(const Detections& dets, const std::vector<std::string>& class_names,
                                             const Calibration& calib, ImageSize image);

// One result line (no trailing newline); locale-independent number formatting.
std::string kitti_line(const KittiObject& obj);

// Without a calib: one LiDAR-frame line per detection, `type x y z l w h yaw score` (4 decimals).
std::string lidar_line(const Detections& dets, size_t i, const std::vector<std::string>& class_names);

}  // namespace sample
}  // namespace clean_deploy
