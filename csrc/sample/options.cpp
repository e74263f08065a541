// clean_deploy C++ sample: command-line parsing and frame listing (see options.h).
#include "options.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "error.h"
#include "png_size.h"

namespace clean_deploy {
namespace sample {

namespace fs = std::filesystem;

std::string usage() {
  return
      "usage: clean_deploy_infer --model model.onnx [--sidecar model.json] [--custom-ops libclean_deploy_ort.so]\n"
      "                          --bin 000123.bin|velodyne/ [--calib 000123.txt|calib/] --out 000123.txt|results/\n"
      "                          [--threads N] [--allow-spinning] [--timing] [--image-size 1242x375 | --images image_2/]\n"
      "                          [--allow-voxel-overflow] [--dump-voxels DIR] [--timing-json FILE]\n"
      "       clean_deploy_infer --engine model.plan [--trt-plugins libclean_deploy_trt_plugins.so] ...  (TensorRT builds)\n"
      "\n"
      "Runs an exported clean_deploy detector on KITTI velodyne frames and writes KITTI result files.\n"
      "  --model PATH          exported ONNX model (ONNX Runtime, CPU)\n"
      "  --engine PATH         TensorRT engine built from it (only when built with TensorRT)\n"
      "  --sidecar PATH        the export's sidecar JSON (default: model path with .json)\n"
      "  --custom-ops PATH     clean_deploy's ONNX Runtime op library (default: $CLEAN_DEPLOY_ORT_LIB,\n"
      "                        else <bin>/../lib/libclean_deploy_ort.so)\n"
      "  --trt-plugins PATH    clean_deploy's TensorRT plugin library (default: $CLEAN_DEPLOY_TRT_PLUGINS,\n"
      "                        else <bin>/../lib/libclean_deploy_trt_plugins.so)\n"
      "  --bin PATH            a KITTI .bin (float32 x y z intensity) or a folder of them\n"
      "  --calib PATH          KITTI calib file, or folder of <id>.txt: crops the cloud to camera 2's FOV and\n"
      "                        writes camera-frame KITTI results; without it: no FOV crop, LiDAR-frame lines\n"
      "                        'type x y z l w h yaw score'\n"
      "  --out PATH            result file (one frame) or folder (<id>.txt per frame)\n"
      "  --threads N           ONNX Runtime intra-op threads (default: one per core)\n"
      "  --allow-spinning      let idle ONNX Runtime threads busy-wait (its default; off here because they\n"
      "                        then compete with the pre-processing for the cores; use on reserved cores)\n"
      "  --timing              per-stage timings of every frame (load / pre-processing / network / write)\n"
      "  --timing-json FILE    the same per frame as JSON lines (id, points, voxels, detections, *_ms), for\n"
      "                        benchmarks (clean-deploy bench --cpp)\n"
      "  --image-size WxH      camera 2 image size for the FOV crop and 2D boxes (default 1242x375)\n"
      "  --images DIR          KITTI image_2 folder: each frame's size from <id>.png's header (as the Python\n"
      "                        reader; frames without a PNG use --image-size)\n"
      "  --allow-voxel-overflow  truncate clouds filling more than the model's max_voxels (spconv's\n"
      "                        behaviour) instead of refusing them\n"
      "  --dump-voxels DIR     write each frame's network inputs as .npy (debugging)\n";
}

bool parse_options(int argc, char** argv, const std::string& exe_dir, Options& opt) {
  auto value = [&](int& i, const std::string& flag) -> std::string {
    if (i + 1 >= argc) throw UsageError(flag + " needs a value\n\n" + usage());
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage();
      return false;
    } else if (a == "--model") {
      opt.model = value(i, a);
    } else if (a == "--engine") {
      opt.engine = value(i, a);
    } else if (a == "--sidecar") {
      opt.sidecar = value(i, a);
    } else if (a == "--custom-ops") {
      opt.custom_ops = value(i, a);
    } else if (a == "--trt-plugins") {
      opt.trt_plugins = value(i, a);
    } else if (a == "--bin") {
      opt.bin = value(i, a);
    } else if (a == "--calib") {
      opt.calib = value(i, a);
    } else if (a == "--out") {
      opt.out = value(i, a);
    } else if (a == "--images") {
      opt.images = value(i, a);
    } else if (a == "--dump-voxels") {
      opt.dump_voxels = value(i, a);
    } else if (a == "--timing-json") {
      opt.timing_json = value(i, a);
    } else if (a == "--threads") {
      const std::string v = value(i, a);
      char* end = nullptr;
      const long t = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || t < 0 || t > 1024) throw UsageError("--threads: expected an integer >= 0, got '" + v + "'");
      opt.threads = static_cast<int>(t);
    } else if (a == "--image-size") {
      const std::string v = value(i, a);
      int w = 0, h = 0;
      char x = 0, extra = 0;
      if (std::sscanf(v.c_str(), "%d%c%d%c", &w, &x, &h, &extra) != 3 || (x != 'x' && x != 'X') || w <= 0 || h <= 0)
        throw UsageError("--image-size: expected WIDTHxHEIGHT such as 1242x375, got '" + v + "'");
      opt.image = ImageSize{w, h};
    } else if (a == "--timing") {
      opt.timing = true;
    } else if (a == "--allow-voxel-overflow") {
      opt.allow_voxel_overflow = true;
    } else if (a == "--allow-spinning") {
      opt.allow_spinning = true;
    } else {
      throw UsageError("unknown argument '" + a + "'\n\n" + usage());
    }
  }
  if (opt.model.empty() == opt.engine.empty()) throw UsageError("pass exactly one of --model (ONNX) or --engine (TensorRT)\n\n" + usage());
  if (opt.bin.empty()) throw UsageError("--bin is required\n\n" + usage());
  if (opt.out.empty()) throw UsageError("--out is required\n\n" + usage());
  if (opt.sidecar.empty()) opt.sidecar = fs::path(opt.model.empty() ? opt.engine : opt.model).replace_extension(".json").string();
  const fs::path lib_dir = fs::path(exe_dir) / ".." / "lib";
  if (opt.custom_ops.empty()) {
    const char* env = std::getenv("CLEAN_DEPLOY_ORT_LIB");
    opt.custom_ops = env && *env ? env : (lib_dir / "libclean_deploy_ort.so").lexically_normal().string();
  }
  if (opt.trt_plugins.empty()) {
    const char* env = std::getenv("CLEAN_DEPLOY_TRT_PLUGINS");
    opt.trt_plugins = env && *env ? env : (lib_dir / "libclean_deploy_trt_plugins.so").lexically_normal().string();
  }
  return true;
}

std::vector<Frame> list_frames(const Options& opt) {
  std::error_code ec;
  std::vector<Frame> frames;
  const bool calib_dir = !opt.calib.empty() && fs::is_directory(opt.calib, ec);
  if (!opt.images.empty() && !fs::is_directory(opt.images, ec))
    throw SampleError("--images must be a folder of <id>.png files: " + opt.images);
  auto image_for = [&](const std::string& id) {
    ImageSize size = opt.image;
    if (!opt.images.empty()) read_png_size((fs::path(opt.images) / (id + ".png")).string(), size);
    return size;
  };
  auto calib_for = [&](const std::string& id) -> std::string {
    if (opt.calib.empty()) return "";
    const std::string path = calib_dir ? (fs::path(opt.calib) / (id + ".txt")).string() : opt.calib;
    if (!fs::is_regular_file(path, ec)) throw SampleError("calib file not found: " + path + " (frame " + id + ")");
    return path;
  };
  if (fs::is_directory(opt.bin, ec)) {
    if (!opt.calib.empty() && !calib_dir)
      throw SampleError("--bin is a folder, so --calib must be a folder of <id>.txt files: " + opt.calib);
    std::vector<fs::path> bins;
    for (const auto& e : fs::directory_iterator(opt.bin, ec))
      if (e.path().extension() == ".bin" && e.is_regular_file()) bins.push_back(e.path());
    if (ec) throw SampleError("cannot list " + opt.bin + ": " + ec.message());
    if (bins.empty()) throw SampleError("no .bin files in " + opt.bin);
    std::sort(bins.begin(), bins.end());
    if (fs::exists(opt.out, ec) && !fs::is_directory(opt.out, ec))
      throw SampleError("--bin is a folder, so --out must be a folder: " + opt.out + " is a file");
    for (const auto& b : bins) {
      const std::string id = b.stem().string();
      frames.push_back(Frame{id, b.string(), calib_for(id), (fs::path(opt.out) / (id + ".txt")).string(), image_for(id)});
    }
    return frames;
  }
  if (!fs::is_regular_file(opt.bin, ec)) throw SampleError("velodyne file not found: " + opt.bin);
  const std::string id = fs::path(opt.bin).stem().string();
  const bool out_dir = fs::is_directory(opt.out, ec) || (!opt.out.empty() && opt.out.back() == '/');
  frames.push_back(Frame{id, opt.bin, calib_for(id), out_dir ? (fs::path(opt.out) / (id + ".txt")).string() : opt.out,
                        image_for(id)});
  return frames;
}

}  // namespace sample
}  // namespace clean_deploy
