// clean_deploy C++ sample: per-frame pipeline (see pipeline.h).
#include "pipeline.h"

#include <chrono>
#include <filesystem>

#include "calib.h"
#include "crop.h"
#include "error.h"
#include "file_io.h"
#include "kitti_results.h"
#include "npy.h"

namespace clean_deploy {
namespace sample {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

VoxelParams voxel_params(const Sidecar& sc) {
  VoxelParams p;
  p.point_cloud_range = sc.point_cloud_range;
  p.voxel_size = sc.voxel_size;
  p.grid_size = sc.grid_size;
  p.max_points_per_voxel = sc.max_points_per_voxel;
  p.max_voxels = sc.max_voxels;
  p.num_point_features = sc.num_point_features;
  return p;
}

Pipeline::Pipeline(const Sidecar& sidecar, std::unique_ptr<Detector> detector, const PipelineOptions& options)
    : sidecar_(sidecar), detector_(std::move(detector)), options_(options), voxelizer_(voxel_params(sidecar)) {}

const Detections& Pipeline::detect(PointCloud& cloud, const Calibration* calib, ImageSize image, FrameStats* stats) {
  // ---- pre-processing: FOV crop (with a calib), range crop, voxelisation
  auto t0 = Clock::now();
  if (stats) stats->raw_points = cloud.size();
  if (calib) crop_to_camera_fov(cloud, *calib, image);
  crop_to_range(cloud, sidecar_.point_cloud_range);
  voxelizer_.run(cloud, batch_);
  if (options_.strict_max_voxels && batch_.overflow_voxels > 0)
    throw SampleError("the cloud fills " + std::to_string(batch_.num_voxels + batch_.overflow_voxels) +
                      " voxels, more than the model's max_voxels=" + std::to_string(sidecar_.max_voxels) + "; " +
                      std::to_string(batch_.overflow_voxels) +
                      " voxels would be dropped silently (crop the cloud, re-export with a larger cap, or pass "
                      "--allow-voxel-overflow to truncate as spconv does)");
  const double pre_ms = ms_since(t0);

  // ---- network (an empty cloud has no objects: the network would only see its biases)
  t0 = Clock::now();
  if (batch_.num_voxels > 0) {
    detector_->infer(batch_, dets_);
  } else {
    dets_.clear();
  }
  if (stats) {
    stats->kept_points = cloud.size();
    stats->voxels = batch_.num_voxels;
    stats->detections = dets_.size();
    stats->times.pre_ms = pre_ms;
    stats->times.net_ms = ms_since(t0);
  }
  return dets_;
}

FrameStats Pipeline::run(const Frame& frame) {
  FrameStats st;
  // ---- load
  auto t0 = Clock::now();
  read_kitti_bin(frame.bin, cloud_);
  const bool have_calib = !frame.calib.empty();
  Calibration calib;
  if (have_calib) calib = read_kitti_calib(frame.calib);
  st.times.load_ms = ms_since(t0);

  try {
    detect(cloud_, have_calib ? &calib : nullptr, frame.image, &st);
  } catch (const SampleError& e) {
    throw SampleError(frame.bin + ": " + e.what());
  }
  if (!options_.dump_voxels_dir.empty()) dump(frame.id);

  // ---- results
  t0 = Clock::now();
  std::string text;
  if (have_calib) {
    for (const auto& o : detections_to_kitti(dets_, sidecar_.class_names, calib, frame.image)) text += kitti_line(o) + "\n";
  } else {
    for (size_t i = 0; i < dets_.size(); ++i) text += lidar_line(dets_, i, sidecar_.class_names) + "\n";
  }
  write_file(frame.out, text);
  st.times.write_ms = ms_since(t0);
  return st;
}

void Pipeline::dump(const std::string& id) const {
  const auto base = std::filesystem::path(options_.dump_voxels_dir) / id;
  const int64_t V = batch_.num_voxels;
  write_npy(base.string() + "_points.npy", cloud_.data.data(), {static_cast<int64_t>(cloud_.size()), 4});
  write_npy(base.string() + "_voxels.npy", batch_.voxels.data(),
            {V, sidecar_.max_points_per_voxel, sidecar_.num_point_features});
  write_npy(base.string() + "_num_points.npy", batch_.num_points.data(), {V});
  write_npy(base.string() + "_coords.npy", batch_.coords.data(), {V, 4});
}

}  // namespace sample
}  // namespace clean_deploy
