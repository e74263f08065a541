// clean_deploy C++ sample: TensorRT backend (built with -DCLEAN_DEPLOY_SAMPLE_WITH_TENSORRT=ON when
// TensorRT's headers and the CUDA toolkit are found). libnvinfer is not linked: it is loaded at run
// time (dlopen libnvinfer.so.<major of the headers>, or CLEAN_DEPLOY_NVINFER=/path), so one binary
// runs ONNX models everywhere and engines where TensorRT is installed; the CUDA runtime is linked
// statically. Loads a serialized engine after registering the clean_deploy plugins of
// libclean_deploy_trt_plugins.so with the runtime's IPluginRegistry::loadLibrary. The engine
// comes from the exported model prepared for TensorRT's parser (plugins/prepare_onnx.py, see
// docs/tensorrt.md), e.g.
//   trtexec --onnx=model_trt.onnx --dynamicPlugins=build/lib/libclean_deploy_trt_plugins.so
//           --minShapes=voxels:1x5x4,voxel_num_points:1,voxel_coords:1x4
//           --maxShapes=voxels:<max_voxels>x5x4,voxel_num_points:<max_voxels>,voxel_coords:<max_voxels>x4
//           --saveEngine=model.plan
// and runs with the original export's sidecar (--sidecar model.json). Uses the name-based I/O API
// (TensorRT >= 8.5; 10.x).
#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "detector.h"
#include "error.h"
#include "file_io.h"

namespace clean_deploy {
namespace sample {

namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw SampleError(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
#define CD_CUDA(expr) cuda_check((expr), #expr)

class TrtLogger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "[TensorRT] %s\n", msg);
  }
};

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  void reserve(size_t n) {
    if (n <= bytes) return;
    if (ptr) CD_CUDA(cudaFree(ptr));
    ptr = nullptr;
    bytes = 0;
    CD_CUDA(cudaMalloc(&ptr, n));
    bytes = n;
  }
};

nvinfer1::Dims make_dims(std::initializer_list<int64_t> v) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  int i = 0;
  for (int64_t x : v) d.d[i++] = static_cast<decltype(d.d[0] + 0)>(x);
  return d;
}

int64_t volume(const nvinfer1::Dims& d) {
  int64_t n = 1;
  for (int i = 0; i < d.nbDims; ++i) n *= d.d[i];
  return n;
}

#define CD_STR2(x) #x
#define CD_STR(x) CD_STR2(x)

// createInferRuntime_INTERNAL of the libnvinfer matching the headers' major version, loaded once.
using CreateRuntimeFn = void* (*)(void* logger, int32_t version);

CreateRuntimeFn load_nvinfer() {
  static CreateRuntimeFn fn = nullptr;
  static std::string error;
  if (fn) return fn;
  if (!error.empty()) throw SampleError(error);
  const char* env = std::getenv("CLEAN_DEPLOY_NVINFER");
  const std::string name = env && *env ? env : "libnvinfer.so." CD_STR(NV_TENSORRT_MAJOR);
  std::string why;
  // RTLD_GLOBAL: TensorRT's own plugin libraries and ours find it when the registry loads them
  if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    fn = reinterpret_cast<CreateRuntimeFn>(dlsym(handle, "createInferRuntime_INTERNAL"));
    if (fn) return fn;
    why = name + ": no createInferRuntime_INTERNAL";
    dlclose(handle);
  } else {
    const char* err = dlerror();
    why = err ? err : name;
  }
  error = "TensorRT " CD_STR(NV_TENSORRT_MAJOR) ".x runtime not found (" + why +
          "): install TensorRT " CD_STR(NV_TENSORRT_MAJOR) ".x, put its lib/ on LD_LIBRARY_PATH or set "
          "CLEAN_DEPLOY_NVINFER=/path/to/libnvinfer.so." CD_STR(NV_TENSORRT_MAJOR) "; ONNX models run with --model";
  throw SampleError(error);
}

class TrtDetector final : public Detector {
 public:
  TrtDetector(const TrtBackendOptions& o, const Sidecar& sc) : sidecar_(sc) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(o.engine_path, ec)) throw SampleError("TensorRT engine not found: " + o.engine_path);
    if (!o.plugin_library.empty() && !std::filesystem::is_regular_file(o.plugin_library, ec))
      throw SampleError("TensorRT plugin library not found: " + o.plugin_library + " (pass --trt-plugins)");
    const CreateRuntimeFn create_runtime = load_nvinfer();
    runtime_.reset(static_cast<nvinfer1::IRuntime*>(create_runtime(&logger_, NV_TENSORRT_VERSION)));
    if (!runtime_)
      throw SampleError("TensorRT: createInferRuntime failed (libnvinfer older than the headers, " CD_STR(NV_TENSORRT_MAJOR)
                        ".x, this sample was built with?)");
    if (!o.plugin_library.empty()) {
      registry_ = &runtime_->getPluginRegistry();
      plugins_ = registry_->loadLibrary(o.plugin_library.c_str());
      if (!plugins_)
        throw SampleError("TensorRT could not load the plugin library " + o.plugin_library +
                          " (see the [TensorRT] messages; plugins already registered by another library also fail)");
    }
    const std::string blob = read_file(o.engine_path, "TensorRT engine");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_)
      throw SampleError("TensorRT could not deserialize " + o.engine_path +
                        " (built by another TensorRT version or GPU, or a plugin is missing; see the [TensorRT] messages)");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw SampleError("TensorRT: createExecutionContext failed");
    for (size_t k = 0; k < 3; ++k) check_io(sidecar_.input_names[k], nvinfer1::TensorIOMode::kINPUT);
    for (size_t k = 0; k < 4; ++k) check_io(sidecar_.output_names[k], nvinfer1::TensorIOMode::kOUTPUT);
    const nvinfer1::Dims vmax = engine_->getProfileShape(sidecar_.input_names[0].c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
    max_voxels_ = vmax.nbDims == 3 ? static_cast<int64_t>(vmax.d[0]) : -1;
    CD_CUDA(cudaStreamCreate(&stream_));
  }

  ~TrtDetector() override {
    if (stream_) cudaStreamDestroy(stream_);
    context_.reset();
    engine_.reset();
    if (plugins_ && registry_) registry_->deregisterLibrary(plugins_);
    runtime_.reset();
  }

  std::string description() const override { return "TensorRT (CUDA)"; }

  void infer(const VoxelBatch& b, Detections& out) override {
    const int64_t V = b.num_voxels;
    if (max_voxels_ >= 0 && V > max_voxels_)
      throw SampleError("TensorRT: " + std::to_string(V) + " voxels, the engine's optimisation profile allows at most " +
                        std::to_string(max_voxels_) + " (rebuild it with maxShapes voxels:" +
                        std::to_string(sidecar_.max_voxels) + "x...)");
    const auto& in = sidecar_.input_names;
    const auto& on = sidecar_.output_names;
    bool ok = context_->setInputShape(in[0].c_str(), make_dims({V, sidecar_.max_points_per_voxel, sidecar_.num_point_features}));
    ok = ok && context_->setInputShape(in[1].c_str(), make_dims({V}));
    ok = ok && context_->setInputShape(in[2].c_str(), make_dims({V, 4}));
    if (!ok) throw SampleError("TensorRT: setInputShape failed for " + std::to_string(V) + " voxels");
    const void* host_in[3] = {b.voxels.data(), b.num_points.data(), b.coords.data()};
    const size_t in_bytes[3] = {b.voxels.size() * sizeof(float), b.num_points.size() * sizeof(int32_t),
                                b.coords.size() * sizeof(int32_t)};
    for (int k = 0; k < 3; ++k) {
      dev_in_[k].reserve(in_bytes[k]);
      CD_CUDA(cudaMemcpyAsync(dev_in_[k].ptr, host_in[k], in_bytes[k], cudaMemcpyHostToDevice, stream_));
      if (!context_->setTensorAddress(in[k].c_str(), dev_in_[k].ptr)) throw SampleError("TensorRT: setTensorAddress " + in[k]);
    }
    int64_t count[4];
    for (int k = 0; k < 4; ++k) {
      const nvinfer1::Dims d = context_->getTensorShape(on[k].c_str());
      count[k] = volume(d);
      if (d.nbDims < 1 || count[k] < 0) throw SampleError("TensorRT: output '" + on[k] + "' has no static shape");
      dev_out_[k].reserve(static_cast<size_t>(count[k]) * 4);  // float32 / int32
      if (!context_->setTensorAddress(on[k].c_str(), dev_out_[k].ptr)) throw SampleError("TensorRT: setTensorAddress " + on[k]);
    }
    const int64_t M = count[1];
    if (count[0] != 7 * M || count[2] != M || count[3] != 1)
      throw SampleError("TensorRT: unexpected output sizes (expected boxes [1, M, 7], scores [1, M], labels [1, M], valid_count [1])");
    host_boxes_.resize(static_cast<size_t>(7 * M));
    host_scores_.resize(static_cast<size_t>(M));
    host_labels_.resize(static_cast<size_t>(M));
    int32_t valid = 0;
    if (!context_->enqueueV3(stream_)) throw SampleError("TensorRT: enqueueV3 failed (see the [TensorRT] messages)");
    CD_CUDA(cudaMemcpyAsync(host_boxes_.data(), dev_out_[0].ptr, host_boxes_.size() * 4, cudaMemcpyDeviceToHost, stream_));
    CD_CUDA(cudaMemcpyAsync(host_scores_.data(), dev_out_[1].ptr, host_scores_.size() * 4, cudaMemcpyDeviceToHost, stream_));
    CD_CUDA(cudaMemcpyAsync(host_labels_.data(), dev_out_[2].ptr, host_labels_.size() * 4, cudaMemcpyDeviceToHost, stream_));
    CD_CUDA(cudaMemcpyAsync(&valid, dev_out_[3].ptr, 4, cudaMemcpyDeviceToHost, stream_));
    CD_CUDA(cudaStreamSynchronize(stream_));
    decode_outputs(host_boxes_.data(), host_scores_.data(), host_labels_.data(), M, valid, sidecar_.class_names.size(),
                   "TensorRT", out);
  }

 private:
  void check_io(const std::string& name, nvinfer1::TensorIOMode mode) const {
    if (engine_->getTensorIOMode(name.c_str()) != mode)
      throw SampleError("TensorRT engine has no " + std::string(mode == nvinfer1::TensorIOMode::kINPUT ? "input" : "output") +
                        " tensor '" + name + "' (sidecar " + sidecar_.path + ")");
    const nvinfer1::DataType t = engine_->getTensorDataType(name.c_str());
    const bool is_float = name == sidecar_.input_names[0] || name == sidecar_.output_names[0] || name == sidecar_.output_names[1];
    if (t != (is_float ? nvinfer1::DataType::kFLOAT : nvinfer1::DataType::kINT32))
      throw SampleError("TensorRT engine: tensor '" + name + "' must be " + (is_float ? "float32" : "int32"));
  }

  Sidecar sidecar_;
  TrtLogger logger_;
  nvinfer1::IPluginRegistry* registry_ = nullptr;
  nvinfer1::IPluginRegistry::PluginLibraryHandle plugins_ = nullptr;
  // TensorRT >= 8: objects are released with delete
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  int64_t max_voxels_ = -1;
  DeviceBuffer dev_in_[3], dev_out_[4];
  std::vector<float> host_boxes_, host_scores_;
  std::vector<int32_t> host_labels_;
};

}  // namespace

bool have_tensorrt() { return true; }

std::unique_ptr<Detector> make_trt_detector(const TrtBackendOptions& options, const Sidecar& sidecar) {
  return std::make_unique<TrtDetector>(options, sidecar);
}

}  // namespace sample
}  // namespace clean_deploy
