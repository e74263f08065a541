// clean_deploy C++ sample: sidecar reader (see sidecar.h).
#include "sidecar.h"

#include <cmath>
#include <filesystem>

#include "error.h"
#include "file_io.h"
#include "json.h"

namespace clean_deploy {
namespace sample {

namespace {

constexpr int kSidecarVersion = 1;

template <size_t N>
std::array<float, N> float_array(const JsonValue& v, const std::string& what) {
  const auto& a = v.as_array(what);
  if (a.size() != N) throw SampleError(what + ": expected " + std::to_string(N) + " numbers, got " + std::to_string(a.size()));
  std::array<float, N> out{};
  for (size_t i = 0; i < N; ++i) {
    const double d = a[i].as_number(what + "[" + std::to_string(i) + "]");
    if (!std::isfinite(d)) throw SampleError(what + "[" + std::to_string(i) + "]: not a finite number");
    out[i] = static_cast<float>(d);  // as Python: float -> float32 (spconv's coors_range / vsize)
  }
  return out;
}

int positive_int(const JsonValue& v, const std::string& what) {
  const double d = v.as_number(what);
  if (!(d >= 1 && d <= 2147483647.0) || d != std::floor(d))
    throw SampleError(what + ": expected a positive integer, got " + std::to_string(d));
  return static_cast<int>(d);
}

std::vector<std::string> string_list(const JsonValue& v, const std::string& what) {
  std::vector<std::string> out;
  for (const auto& s : v.as_array(what)) out.push_back(s.as_string(what + " entry"));
  return out;
}

}  // namespace

std::string default_sidecar_path(const std::string& model_path) {
  return std::filesystem::path(model_path).replace_extension(".json").string();
}

Sidecar read_sidecar(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw SampleError("sidecar not found: " + path + " (written next to the .onnx by `clean-deploy export`; pass --sidecar)");
  const JsonValue root = JsonValue::parse(read_file(path, "sidecar"), path);
  const std::string w = path;
  if (!root.is_object()) throw SampleError(w + ": not a clean_deploy sidecar (top level is not an object)");
  if (!root.has("format") || !root.at("format", w).is_string() ||
      root.at("format", w).as_string(w) != "clean_deploy.sidecar")
    throw SampleError(w + ": not a clean_deploy sidecar (no 'format' marker)");
  const double version = root.at("version", w).as_number(w + ": version");
  if (version != kSidecarVersion)
    throw SampleError(w + ": sidecar version " + std::to_string(static_cast<int>(version)) + ", this sample reads " +
                      std::to_string(kSidecarVersion));

  Sidecar sc;
  sc.path = path;
  if (root.has("model")) sc.model = root.at("model", w).as_string(w + ": model");
  if (root.has("detector")) sc.detector = root.at("detector", w).as_string(w + ": detector");
  sc.class_names = string_list(root.at("class_names", w), w + ": class_names");
  if (sc.class_names.empty()) throw SampleError(w + ": class_names is empty");

  const JsonValue& pre = root.at("preprocess", w);
  const std::string pw = w + ": preprocess";
  sc.point_cloud_range = float_array<6>(pre.at("point_cloud_range", pw), pw + ".point_cloud_range");
  sc.voxel_size = float_array<3>(pre.at("voxel_size", pw), pw + ".voxel_size");
  const auto& grid = pre.at("grid_size", pw).as_array(pw + ".grid_size");
  if (grid.size() != 3) throw SampleError(pw + ".grid_size: expected 3 integers (nx ny nz)");
  for (int i = 0; i < 3; ++i) sc.grid_size[i] = positive_int(grid[i], pw + ".grid_size[" + std::to_string(i) + "]");
  sc.max_points_per_voxel = positive_int(pre.at("max_points_per_voxel", pw), pw + ".max_points_per_voxel");
  sc.max_voxels = positive_int(pre.at("max_voxels", pw), pw + ".max_voxels");
  if (pre.has("point_features")) {
    const auto feats = string_list(pre.at("point_features", pw), pw + ".point_features");
    if (feats.size() != 4)
      throw SampleError(pw + ".point_features: this sample reads KITTI clouds (x y z intensity), the model wants " +
                        std::to_string(feats.size()) + " features");
  }
  if (pre.has("coords_order") && pre.at("coords_order", pw).as_string(pw + ".coords_order") != "batch z y x")
    throw SampleError(pw + ".coords_order: expected 'batch z y x'");
  for (int i = 0; i < 3; ++i) {
    if (!(sc.voxel_size[i] > 0)) throw SampleError(pw + ".voxel_size: values must be > 0");
    if (!(sc.point_cloud_range[i + 3] > sc.point_cloud_range[i]))
      throw SampleError(pw + ".point_cloud_range: max must be > min on every axis");
    // spconv's PointToVoxel computes the grid as round((max - min) / size) in float32
    const float n = std::round((sc.point_cloud_range[i + 3] - sc.point_cloud_range[i]) / sc.voxel_size[i]);
    if (static_cast<double>(n) != sc.grid_size[i])
      throw SampleError(pw + ".grid_size[" + std::to_string(i) + "] = " + std::to_string(sc.grid_size[i]) +
                        " does not match round((max - min) / voxel_size) = " + std::to_string(static_cast<long>(n)));
  }

  sc.input_names = string_list(root.at("input_names", w), w + ": input_names");
  sc.output_names = string_list(root.at("output_names", w), w + ": output_names");
  if (sc.input_names.size() != 3)
    throw SampleError(w + ": input_names: expected 3 (voxels, voxel_num_points, voxel_coords), got " +
                      std::to_string(sc.input_names.size()));
  if (sc.output_names.size() != 4)
    throw SampleError(w + ": output_names: expected 4 (boxes, scores, labels, valid_count), got " +
                      std::to_string(sc.output_names.size()));
  return sc;
}

}  // namespace sample
}  // namespace clean_deploy
