// clean_deploy C++ sample: one frame end to end, the part to embed in a perception stack:
//   load (.bin + calib) -> pre-processing (FOV crop, range crop, voxelisation) -> network -> results.
// The same steps, in the same order and precision, as the Python runtime
// (clean_deploy.runtime.ort_session.OrtSession + clean_deploy.data.kitti.results).
#pragma once

#include <memory>
#include <string>

#include "detector.h"
#include "options.h"
#include "calib.h"
#include "crop.h"
#include "point_cloud.h"
#include "sidecar.h"
#include "voxelizer.h"

namespace clean_deploy {
namespace sample {

struct StageTimes {
  double load_ms = 0, pre_ms = 0, net_ms = 0, write_ms = 0;
  double total_ms() const { return load_ms + pre_ms + net_ms + write_ms; }
};

struct FrameStats {
  size_t raw_points = 0;   // in the .bin
  size_t kept_points = 0;  // after the FOV and range crops
  int64_t voxels = 0;
  size_t detections = 0;
  StageTimes times;
};

struct PipelineOptions {
  bool strict_max_voxels = true;  // refuse clouds that overflow max_voxels instead of truncating
  std::string dump_voxels_dir;    // "" = no dump
};

class Pipeline {
 public:
  Pipeline(const Sidecar& sidecar, std::unique_ptr<Detector> detector, const PipelineOptions& options);

  // In-memory entry point (a point cloud from the sensor driver): crops `cloud` in place (camera FOV
  // when `calib` is given, then the range), voxelises it and runs the network. Fills the pre/net
  // times and counts of `stats` when given. The detections stay valid until the next call.
  const Detections& detect(PointCloud& cloud, const Calibration* calib, ImageSize image, FrameStats* stats = nullptr);

  // File entry point of clean_deploy_infer: reads frame.bin (+ frame.calib), detect(), writes frame.out
  // (KITTI camera-frame lines with a calib, LiDAR-frame lines without).
  FrameStats run(const Frame& frame);

  const Detector& detector() const { return *detector_; }
  const Detections& detections() const { return dets_; }
  const VoxelBatch& voxels() const { return batch_; }

 private:
  void dump(const std::string& id) const;

  Sidecar sidecar_;
  std::unique_ptr<Detector> detector_;
  PipelineOptions options_;
  Voxelizer voxelizer_;
  PointCloud cloud_;
  VoxelBatch batch_;
  Detections dets_;
};

VoxelParams voxel_params(const Sidecar& sidecar);

}  // namespace sample
}  // namespace clean_deploy
