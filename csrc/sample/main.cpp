// clean_deploy C++ sample: clean_deploy_infer, an exported clean_deploy LiDAR detector on KITTI
// frames with ONNX Runtime (or TensorRT), printing per-stage timings like NVIDIA's CUDA-PointPillars
// sample. See README.md next to this file.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "detector.h"
#include "error.h"
#include "options.h"
#include "pipeline.h"
#include "sidecar.h"

using namespace clean_deploy::sample;

namespace {

std::string exe_dir(const char* argv0) {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) p = std::filesystem::absolute(argv0, ec);
  return p.parent_path().string();
}

void print_times(const StageTimes& t, const std::string& backend) {
  std::printf("[time] load (bin + calib):   %9.3f ms\n", t.load_ms);
  std::printf("[time] pre-processing:       %9.3f ms  (FOV + range crop, voxelisation)\n", t.pre_ms);
  std::printf("[time] network:              %9.3f ms  (%s)\n", t.net_ms, backend.c_str());
  std::printf("[time] write results:        %9.3f ms\n", t.write_ms);
  std::printf("[time] total:                %9.3f ms\n", t.total_ms());
}

// One JSON object per frame (JSON lines): what clean_deploy.bench.cpp_sample reads.
void write_timing_json(std::FILE* f, const Frame& frame, const FrameStats& st) {
  std::string id;
  for (char c : frame.id) {
    if (c == '"' || c == '\\') id += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) id += c;
  }
  std::fprintf(f,
               "{\"id\": \"%s\", \"raw_points\": %zu, \"kept_points\": %zu, \"voxels\": %lld, \"detections\": %zu, "
               "\"load_ms\": %.6f, \"pre_ms\": %.6f, \"net_ms\": %.6f, \"write_ms\": %.6f}\n",
               id.c_str(), st.raw_points, st.kept_points, static_cast<long long>(st.voxels), st.detections,
               st.times.load_ms, st.times.pre_ms, st.times.net_ms, st.times.write_ms);
}

int run(int argc, char** argv) {
  Options opt;
  if (!parse_options(argc, argv, exe_dir(argv[0]), opt)) return 0;
  const std::vector<Frame> frames = list_frames(opt);
  const std::string& model = opt.model.empty() ? opt.engine : opt.model;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model, ec))
    throw SampleError(std::string(opt.model.empty() ? "TensorRT engine" : "ONNX model") + " not found: " + model);
  const Sidecar sidecar = read_sidecar(opt.sidecar);
  std::unique_ptr<Detector> detector;
  if (!opt.model.empty()) {
    detector = make_ort_detector(OrtBackendOptions{opt.model, opt.custom_ops, opt.threads, opt.allow_spinning}, sidecar);
  } else {
    detector = make_trt_detector(TrtBackendOptions{opt.engine, opt.trt_plugins}, sidecar);
  }
  const std::string backend = detector->description();
  std::string classes;
  for (const auto& c : sidecar.class_names) classes += (classes.empty() ? "" : " ") + c;
  std::printf("clean_deploy_infer: %s (%s; classes %s) on %s\n", model.c_str(),
              sidecar.detector.c_str(), classes.c_str(), backend.c_str());
  std::printf("voxels %.3gx%.3gx%.3g m, grid %dx%dx%d, max %d voxels x %d points; %zu frame(s)%s\n",
              sidecar.voxel_size[0], sidecar.voxel_size[1], sidecar.voxel_size[2], sidecar.grid_size[0],
              sidecar.grid_size[1], sidecar.grid_size[2], sidecar.max_voxels, sidecar.max_points_per_voxel,
              frames.size(), opt.calib.empty() ? ", no calib: no FOV crop, LiDAR-frame results" : "");
  std::fflush(stdout);

  PipelineOptions po;
  po.strict_max_voxels = !opt.allow_voxel_overflow;
  po.dump_voxels_dir = opt.dump_voxels;
  Pipeline pipeline(sidecar, std::move(detector), po);

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> timing_json(nullptr, &std::fclose);
  if (!opt.timing_json.empty()) {
    timing_json.reset(std::fopen(opt.timing_json.c_str(), "w"));
    if (!timing_json) throw SampleError("--timing-json: cannot write " + opt.timing_json);
  }
  StageTimes sum;
  size_t timed = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    const Frame& f = frames[i];
    FrameStats st;
    try {
      st = pipeline.run(f);
    } catch (const SampleError& e) {
      throw SampleError("frame " + f.id + ": " + e.what());
    }
    if (opt.timing) {
      std::printf("<<<<<<<<<<<\n");
      std::printf("Load file: %s\n", f.bin.c_str());
      std::printf("Lidar points count: %zu (after FOV + range crop: %zu) -> %lld voxels\n", st.raw_points, st.kept_points,
                  static_cast<long long>(st.voxels));
      print_times(st.times, backend);
      std::printf("Detections: %zu\n", st.detections);
      std::printf("Saved prediction in: %s\n", f.out.c_str());
      std::printf(">>>>>>>>>>>\n");
    } else {
      std::printf("%s: %zu points, %zu kept, %lld voxels, %zu detections -> %s (%.1f ms)\n", f.id.c_str(), st.raw_points,
                  st.kept_points, static_cast<long long>(st.voxels), st.detections, f.out.c_str(), st.times.total_ms());
    }
    std::fflush(stdout);
    if (timing_json) write_timing_json(timing_json.get(), f, st);
    if (frames.size() == 1 || i > 0) {  // the first of several frames includes the session warm-up
      sum.load_ms += st.times.load_ms;
      sum.pre_ms += st.times.pre_ms;
      sum.net_ms += st.times.net_ms;
      sum.write_ms += st.times.write_ms;
      ++timed;
    }
  }
  if (opt.timing && frames.size() > 1) {
    const double n = static_cast<double>(timed);
    StageTimes mean{sum.load_ms / n, sum.pre_ms / n, sum.net_ms / n, sum.write_ms / n};
    std::printf("==== mean over %zu frames (the first frame, with the warm-up, excluded) ====\n", timed);
    print_times(mean, backend);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "clean_deploy_infer: error: %s\n", e.what());
    return 2;
  } catch (const SampleError& e) {
    std::fprintf(stderr, "clean_deploy_infer: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "clean_deploy_infer: error: %s\n", e.what());
    return 1;
  }
}
