// clean_deploy C++ sample: the inference backends behind one interface. A backend runs the exported
// graph on one voxelised frame (batch 1) and returns the valid detections:
//   inputs  voxels [V, T, 4] float32, voxel_num_points [V] int32, voxel_coords [V, 4] int32 (b z y x)
//   outputs boxes [1, M, 7] float32 (x y z l w h yaw, LiDAR), scores [1, M], labels [1, M] int32,
//           valid_count [1] int32 (rows beyond it are padding).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sidecar.h"
#include "voxelizer.h"

namespace clean_deploy {
namespace sample {

struct Detections {
  std::vector<float> boxes;     // D * 7: x y z l w h yaw (LiDAR frame, box centre)
  std::vector<float> scores;    // D
  std::vector<int32_t> labels;  // D, 0-based index into the sidecar's class_names
  size_t size() const { return scores.size(); }
  void clear() {
    boxes.clear();
    scores.clear();
    labels.clear();
  }
};

class Detector {
 public:
  virtual ~Detector() = default;
  // e.g. "ONNX Runtime 1.32.0 (CPU, 2 threads)"
  virtual std::string description() const = 0;
  // Runs the network on a non-empty batch (num_voxels > 0).
  virtual void infer(const VoxelBatch& batch, Detections& out) = 0;
};

// Copies the first valid_count rows of the graph's outputs into `out`, checking valid_count and the
// labels (SampleError naming the backend otherwise).
void decode_outputs(const float* boxes, const float* scores, const int32_t* labels, int64_t max_output,
                    int64_t valid_count, size_t num_classes, const std::string& backend, Detections& out);

struct OrtBackendOptions {
  std::string model_path;           // model.onnx
  std::string custom_ops_library;   // libclean_deploy_ort.so
  int threads = 0;                  // intra-op threads; 0: ONNX Runtime's default (one per core)
  bool allow_spinning = false;      // idle intra-op threads busy-wait (ORT's default) or sleep
};
std::unique_ptr<Detector> make_ort_detector(const OrtBackendOptions& options, const Sidecar& sidecar);

struct TrtBackendOptions {
  std::string engine_path;     // model.plan (built with trtexec + the clean_deploy plugins)
  std::string plugin_library;  // libclean_deploy_trt_plugins.so ("" if the engine needs none)
};
// Throws a SampleError explaining how to enable it when the sample was built without TensorRT.
std::unique_ptr<Detector> make_trt_detector(const TrtBackendOptions& options, const Sidecar& sidecar);
bool have_tensorrt();

}  // namespace sample
}  // namespace clean_deploy
