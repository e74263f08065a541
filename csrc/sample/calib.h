// clean_deploy C++ sample: KITTI calibration file (camera 2) and the LiDAR -> rect camera -> image
// transforms (the KITTI devkit's frames, as clean_deploy.geometry.calib):
//   rect = R0_rect * Tr_velo_to_cam * [velo; 1],   pixel ~ P2 * [rect; 1].
#pragma once

#include <array>
#include <string>

namespace clean_deploy {
namespace sample {

struct Calibration {
  std::array<double, 12> P2{};              // 3x4 row-major
  std::array<double, 9> R0_rect{};          // 3x3
  std::array<double, 12> Tr_velo_to_cam{};  // 3x4
  std::array<double, 12> velo_to_rect{};    // 3x4: rows 0..2 of [R0 0; 0 1] * [Tr; 0 0 0 1]
  std::string source;

  // LiDAR point -> rectified camera point.
  void lidar_to_rect(const double in[3], double out[3]) const;
  // Rectified camera point -> homogeneous P2 projection (u*d, v*d, d).
  void rect_to_image(const double in[3], double out[3]) const;
};

// Parses a KITTI calib file (`KEY: v1 v2 ...` lines; R_rect / Tr_velo_cam spellings accepted,
// unknown keys ignored; P2, R0_rect and Tr_velo_to_cam required). SampleError naming file:line.
Calibration read_kitti_calib(const std::string& path);
Calibration parse_kitti_calib(const std::string& text, const std::string& source);

}  // namespace sample
}  // namespace clean_deploy
