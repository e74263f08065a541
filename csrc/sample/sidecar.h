// clean_deploy C++ sample: the sidecar JSON written next to model.onnx by the exporter
// (schema and validation: clean_deploy/sidecar.py): pre-processing parameters, tensor names and class names.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace clean_deploy {
namespace sample {

struct Sidecar {
  std::string path;      // where it was read from
  std::string model;     // the .onnx file name it describes
  std::string detector;  // e.g. "second_fast@0.25x"
  std::vector<std::string> class_names;
  // pre-processing (x y z order; coords are fed as batch z y x)
  std::array<float, 6> point_cloud_range{};  // x0 y0 z0 x1 y1 z1
  std::array<float, 3> voxel_size{};
  std::array<int, 3> grid_size{};  // nx ny nz
  int max_points_per_voxel = 0;
  int max_voxels = 0;
  int num_point_features = 4;  // x y z intensity
  std::vector<std::string> input_names;   // voxels, voxel_num_points, voxel_coords
  std::vector<std::string> output_names;  // boxes, scores, labels, valid_count
};

// Reads and validates a sidecar (format marker, version 1, shapes and ranges of every field used).
Sidecar read_sidecar(const std::string& path);

// The default sidecar path of a model: same name with the extension replaced by ".json".
std::string default_sidecar_path(const std::string& model_path);

}  // namespace sample
}  // namespace clean_deploy
