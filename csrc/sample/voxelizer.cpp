// clean_deploy C++ sample: voxeliser (see voxelizer.h).
#include "voxelizer.h"

#include <cmath>

#include "error.h"

namespace clean_deploy {
namespace sample {

namespace {
inline size_t slot_of(int64_t key, size_t mask) {
  // Fibonacci hashing of the linear voxel index
  return static_cast<size_t>((static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}
}  // namespace

Voxelizer::Voxelizer(const VoxelParams& params) : p_(params) {
  for (int i = 0; i < 3; ++i) {
    if (!(p_.voxel_size[i] > 0) || p_.grid_size[i] <= 0)
      throw SampleError("voxeliser: voxel_size and grid_size must be positive");
  }
  if (p_.max_points_per_voxel <= 0 || p_.max_voxels <= 0)
    throw SampleError("voxeliser: max_points_per_voxel and max_voxels must be positive");
  if (p_.num_point_features != 4) throw SampleError("voxeliser: points are x y z intensity (4 features)");
  const double cells = static_cast<double>(p_.grid_size[0]) * p_.grid_size[1] * p_.grid_size[2];
  if (cells > 9.0e18) throw SampleError("voxeliser: grid too large");
  table_.assign(1024, Slot{-1, -1});
  mask_ = table_.size() - 1;
}

void Voxelizer::grow() {
  std::vector<Slot> old;
  old.swap(table_);
  table_.assign(old.size() * 2, Slot{-1, -1});
  mask_ = table_.size() - 1;
  used_.clear();
  for (const Slot& s : old) {
    if (s.key < 0) continue;
    size_t i = slot_of(s.key, mask_);
    while (table_[i].key >= 0) i = (i + 1) & mask_;
    table_[i] = s;
    used_.push_back(i);
  }
}

Voxelizer::Slot* Voxelizer::find_or_insert(int64_t key, bool& inserted) {
  if (2 * (used_.size() + 1) > table_.size()) grow();  // load factor <= 1/2
  size_t i = slot_of(key, mask_);
  for (;;) {
    Slot& s = table_[i];
    if (s.key == key) {
      inserted = false;
      return &s;
    }
    if (s.key < 0) {
      s.key = key;
      used_.push_back(i);
      inserted = true;
      return &s;
    }
    i = (i + 1) & mask_;
  }
}

void Voxelizer::run(const PointCloud& cloud, VoxelBatch& out) {
  const int T = p_.max_points_per_voxel;
  const int F = p_.num_point_features;
  const size_t per_voxel = static_cast<size_t>(T) * F;
  out.voxels.clear();
  out.num_points.clear();
  out.coords.clear();
  out.num_voxels = out.overflow_voxels = out.overflow_points = out.outside_points = 0;
  const float* lo = p_.point_cloud_range.data();
  const float* vs = p_.voxel_size.data();
  const int nx = p_.grid_size[0], ny = p_.grid_size[1];
  const size_t n = cloud.size();
  int32_t voxel_num = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* pt = cloud.point(i);
    int c[3];
    bool inside = true;
    for (int j = 0; j < 3; ++j) {
      // exactly spconv's expression: float subtraction, float division, floor
      const float f = std::floor((pt[j] - lo[j]) / vs[j]);
      if (!(f >= 0.0f && f < static_cast<float>(p_.grid_size[j]))) {
        inside = false;
        break;
      }
      c[j] = static_cast<int>(f);
    }
    if (!inside) {
      ++out.outside_points;
      continue;
    }
    const int64_t key = (static_cast<int64_t>(c[2]) * ny + c[1]) * nx + c[0];
    bool inserted = false;
    Slot* s = find_or_insert(key, inserted);
    if (inserted) {
      if (voxel_num >= p_.max_voxels) {
        s->voxel = -1;  // remembered so that the overflow counts distinct voxels
        ++out.overflow_voxels;
        ++out.overflow_points;
        continue;
      }
      s->voxel = voxel_num++;
      out.voxels.insert(out.voxels.end(), per_voxel, 0.0f);
      out.num_points.push_back(0);
      out.coords.insert(out.coords.end(), {0, c[2], c[1], c[0]});
    } else if (s->voxel < 0) {
      ++out.overflow_points;
      continue;
    }
    int32_t& num = out.num_points[static_cast<size_t>(s->voxel)];
    if (num < T) {
      float* dst = out.voxels.data() + static_cast<size_t>(s->voxel) * per_voxel + static_cast<size_t>(num) * F;
      for (int k = 0; k < F; ++k) dst[k] = pt[k];
      ++num;
    }
  }
  out.num_voxels = voxel_num;
  // clear only the slots this frame used
  for (size_t i : used_) table_[i] = Slot{-1, -1};
  used_.clear();
}

}  // namespace sample
}  // namespace clean_deploy
