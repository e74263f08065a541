// clean_deploy C++ sample: CPU voxeliser with spconv 2.x PointToVoxel semantics (the training-time
// voxeliser, clean_deploy.data.voxelize.Voxelizer), bit-exact:
//   * a point's voxel is floor((p - range_min) / voxel_size) per axis in float32; points whose voxel
//     is outside [0, grid) are skipped;
//   * voxels appear in the order of their first point and keep their first max_points_per_voxel
//     points (the rest of the [T, 4] slot is zero);
//   * once max_voxels voxels exist, points of new voxels are dropped (counted in overflow_*; the
//     caller decides whether that is an error, as the Python session's strict_max_voxels).
// Output: the exported graph's inputs voxels [V, T, 4] float32, voxel_num_points [V] int32,
// voxel_coords [V, 4] int32 as (batch = 0, z, y, x).
// Instead of spconv's dense grid-sized hash (~360 MB for KITTI), an open-addressing hash table of the
// occupied voxels is used; it keeps its memory between frames.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "point_cloud.h"

namespace clean_deploy {
namespace sample {

struct VoxelParams {
  std::array<float, 6> point_cloud_range{};  // x0 y0 z0 x1 y1 z1
  std::array<float, 3> voxel_size{};
  std::array<int, 3> grid_size{};  // nx ny nz
  int max_points_per_voxel = 5;
  int max_voxels = 16000;
  int num_point_features = 4;
};

struct VoxelBatch {
  std::vector<float> voxels;        // V * T * F
  std::vector<int32_t> num_points;  // V
  std::vector<int32_t> coords;      // V * 4: batch z y x
  int64_t num_voxels = 0;
  int64_t overflow_voxels = 0;  // distinct voxels dropped because max_voxels was reached
  int64_t overflow_points = 0;  // their points
  int64_t outside_points = 0;   // points whose voxel is outside the grid (float rounding at the range edge)
};

class Voxelizer {
 public:
  explicit Voxelizer(const VoxelParams& params);
  const VoxelParams& params() const { return p_; }
  // Voxelises `cloud` into `out` (its buffers are reused across calls).
  void run(const PointCloud& cloud, VoxelBatch& out);

 private:
  struct Slot {
    int64_t key;  // linear voxel index, -1 empty
    int32_t voxel;  // index into the batch, or -1 for an overflow voxel
  };
  Slot* find_or_insert(int64_t key, bool& inserted);
  void grow();

  VoxelParams p_;
  std::vector<Slot> table_;
  std::vector<size_t> used_;  // occupied slots, to clear them cheaply
  size_t mask_ = 0;
};

}  // namespace sample
}  // namespace clean_deploy
