// clean_deploy C++ sample: command line of clean_deploy_infer and the list of frames it implies.
#pragma once

#include <string>
#include <vector>

#include "crop.h"

namespace clean_deploy {
namespace sample {

struct Options {
  std::string model;         // --model model.onnx (ONNX Runtime)
  std::string engine;        // --engine model.plan (TensorRT builds)
  std::string sidecar;       // --sidecar (default: model/engine with .json)
  std::string custom_ops;    // --custom-ops libclean_deploy_ort.so
  std::string trt_plugins;   // --trt-plugins libclean_deploy_trt_plugins.so
  std::string bin;           // --bin file.bin or folder of .bin files
  std::string calib;         // --calib file.txt or folder (optional)
  std::string out;           // --out result file or folder
  std::string dump_voxels;   // --dump-voxels folder (debug)
  std::string timing_json;   // --timing-json file: one JSON object per frame (counts, stage times)
  ImageSize image;           // --image-size WxH (default for frames without an --images PNG)
  std::string images;        // --images folder of <id>.png (KITTI image_2): per-frame image size
  int threads = 0;           // --threads
  bool timing = false;       // --timing
  bool allow_voxel_overflow = false;  // --allow-voxel-overflow
  bool allow_spinning = false;        // --allow-spinning
};

struct Frame {
  std::string id;     // file stem, e.g. "000123"
  std::string bin;    // velodyne file
  std::string calib;  // calib file, "" without --calib
  std::string out;    // result file
  ImageSize image;    // camera-2 image size (from <images>/<id>.png, else --image-size)
};

// Parses argv; SampleError with the usage hint on bad arguments. Returns false for --help (usage
// printed). `exe_dir` locates the default libraries (<exe_dir>/../lib).
bool parse_options(int argc, char** argv, const std::string& exe_dir, Options& opt);
std::string usage();

// The frames to run: one for a .bin file, every *.bin (sorted) of a folder. Checks up front that each
// frame's calib file exists (when --calib is given) so that a batch fails before any work.
std::vector<Frame> list_frames(const Options& opt);

}  // namespace sample
}  // namespace clean_deploy
