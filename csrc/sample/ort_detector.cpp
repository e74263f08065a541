// clean_deploy C++ sample: ONNX Runtime backend (CPU execution provider) with clean_deploy's custom
// ops registered from libclean_deploy_ort.so (Ort::SessionOptions::RegisterCustomOpsLibrary), the
// same session set-up as the Python runtime (clean_deploy.runtime.ort_ops.session_options).
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <filesystem>

#include "detector.h"
#include "error.h"

namespace clean_deploy {
namespace sample {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + (s[i] < 0 ? std::string("?") : std::to_string(s[i]));
  return out + "]";
}

class OrtDetector final : public Detector {
 public:
  OrtDetector(const OrtBackendOptions& o, const Sidecar& sc)
      : env_(ORT_LOGGING_LEVEL_WARNING, "clean_deploy_infer"),
        mem_(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault)),
        sidecar_(sc),
        threads_(o.threads) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(o.model_path, ec)) throw SampleError("ONNX model not found: " + o.model_path);
    if (!std::filesystem::is_regular_file(o.custom_ops_library, ec))
      throw SampleError("custom-op library not found: " + o.custom_ops_library +
                        " (build it with `bash scripts/build_csrc.sh`, or pass --custom-ops / set CLEAN_DEPLOY_ORT_LIB)");
    Ort::SessionOptions so;
    // Spinning pool threads would take the cores from our own pre-processing between frames.
    so.AddConfigEntry("session.intra_op.allow_spinning", o.allow_spinning ? "1" : "0");
    if (o.threads > 0) {
      so.SetIntraOpNumThreads(o.threads);
      so.SetInterOpNumThreads(1);
    }
    try {
      so.RegisterCustomOpsLibrary(o.custom_ops_library.c_str());
    } catch (const Ort::Exception& e) {
      throw SampleError("ONNX Runtime could not register the custom ops of " + o.custom_ops_library + ": " + e.what());
    }
    try {
      session_ = Ort::Session(env_, o.model_path.c_str(), so);
    } catch (const Ort::Exception& e) {
      throw SampleError("ONNX Runtime could not load " + o.model_path + ": " + e.what());
    }
    check_signature();
    for (const auto& n : sidecar_.input_names) in_names_.push_back(n.c_str());
    for (const auto& n : sidecar_.output_names) out_names_.push_back(n.c_str());
  }

  std::string description() const override {
    return std::string("ONNX Runtime ") + Ort::GetVersionString() + " (CPU, " +
           (threads_ > 0 ? std::to_string(threads_) + " threads" : std::string("default threads")) + ")";
  }

  void infer(const VoxelBatch& b, Detections& out) override {
    const int64_t V = b.num_voxels;
    const int64_t T = sidecar_.max_points_per_voxel, F = sidecar_.num_point_features;
    const std::array<int64_t, 3> vshape{V, T, F};
    const std::array<int64_t, 1> nshape{V};
    const std::array<int64_t, 2> cshape{V, 4};
    // ORT does not write to input buffers; the C API takes non-const pointers
    std::array<Ort::Value, 3> inputs{
        Ort::Value::CreateTensor<float>(mem_, const_cast<float*>(b.voxels.data()), b.voxels.size(), vshape.data(), 3),
        Ort::Value::CreateTensor<int32_t>(mem_, const_cast<int32_t*>(b.num_points.data()), b.num_points.size(),
                                          nshape.data(), 1),
        Ort::Value::CreateTensor<int32_t>(mem_, const_cast<int32_t*>(b.coords.data()), b.coords.size(), cshape.data(),
                                          2)};
    std::vector<Ort::Value> outs;
    try {
      outs = session_.Run(Ort::RunOptions{nullptr}, in_names_.data(), inputs.data(), inputs.size(), out_names_.data(),
                          out_names_.size());
    } catch (const Ort::Exception& e) {
      throw SampleError(std::string("ONNX Runtime inference failed: ") + e.what());
    }
    const auto bshape = outs[0].GetTensorTypeAndShapeInfo().GetShape();
    const auto sshape = outs[1].GetTensorTypeAndShapeInfo().GetShape();
    const auto lshape = outs[2].GetTensorTypeAndShapeInfo().GetShape();
    const auto vcshape = outs[3].GetTensorTypeAndShapeInfo().GetShape();
    if (bshape.size() != 3 || bshape[0] != 1 || bshape[2] != 7 || sshape != std::vector<int64_t>{1, bshape[1]} ||
        lshape != sshape || vcshape != std::vector<int64_t>{1})
      throw SampleError("ONNX Runtime: unexpected output shapes boxes " + shape_str(bshape) + ", scores " +
                        shape_str(sshape) + ", labels " + shape_str(lshape) + ", valid_count " + shape_str(vcshape) +
                        " (expected [1, M, 7], [1, M], [1, M], [1])");
    decode_outputs(outs[0].GetTensorData<float>(), outs[1].GetTensorData<float>(), outs[2].GetTensorData<int32_t>(),
                   bshape[1], outs[3].GetTensorData<int32_t>()[0], sidecar_.class_names.size(), "ONNX Runtime", out);
  }

 private:
  void check_signature() {
    const std::string where = "ONNX model vs sidecar " + sidecar_.path;
    Ort::AllocatorWithDefaultOptions alloc;
    const size_t n_in = session_.GetInputCount(), n_out = session_.GetOutputCount();
    std::vector<std::string> ins, outs;
    for (size_t i = 0; i < n_in; ++i) ins.push_back(session_.GetInputNameAllocated(i, alloc).get());
    for (size_t i = 0; i < n_out; ++i) outs.push_back(session_.GetOutputNameAllocated(i, alloc).get());
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
      return s;
    };
    if (n_in != 3) throw SampleError(where + ": the model has " + std::to_string(n_in) + " inputs (" + join(ins) + "), expected 3");
    // expected element types and ranks, in the sidecar's input/output order
    const ONNXTensorElementDataType in_types[3] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
                                                   ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32};
    const size_t in_ranks[3] = {3, 1, 2};
    for (size_t k = 0; k < 3; ++k) {
      const auto it = std::find(ins.begin(), ins.end(), sidecar_.input_names[k]);
      if (it == ins.end())
        throw SampleError(where + ": the model has no input '" + sidecar_.input_names[k] + "' (it has " + join(ins) + ")");
      const Ort::TypeInfo type = session_.GetInputTypeInfo(static_cast<size_t>(it - ins.begin()));  // owns `info`
      const auto info = type.GetTensorTypeAndShapeInfo();
      const auto shape = info.GetShape();
      if (info.GetElementType() != in_types[k] || shape.size() != in_ranks[k])
        throw SampleError(where + ": input '" + sidecar_.input_names[k] + "' has an unexpected type or rank " + shape_str(shape));
      if (k == 0 && ((shape[1] >= 0 && shape[1] != sidecar_.max_points_per_voxel) ||
                     (shape[2] >= 0 && shape[2] != sidecar_.num_point_features)))
        throw SampleError(where + ": input '" + sidecar_.input_names[0] + "' is " + shape_str(shape) +
                          " but the sidecar says [V, " + std::to_string(sidecar_.max_points_per_voxel) + ", " +
                          std::to_string(sidecar_.num_point_features) + "]");
      if (k == 2 && shape[1] >= 0 && shape[1] != 4)
        throw SampleError(where + ": input '" + sidecar_.input_names[2] + "' is " + shape_str(shape) + ", expected [V, 4]");
    }
    const ONNXTensorElementDataType out_types[4] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
                                                    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32};
    for (size_t k = 0; k < 4; ++k) {
      const auto it = std::find(outs.begin(), outs.end(), sidecar_.output_names[k]);
      if (it == outs.end())
        throw SampleError(where + ": the model has no output '" + sidecar_.output_names[k] + "' (it has " + join(outs) + ")");
      const Ort::TypeInfo type = session_.GetOutputTypeInfo(static_cast<size_t>(it - outs.begin()));
      const auto info = type.GetTensorTypeAndShapeInfo();
      if (info.GetElementType() != out_types[k])
        throw SampleError(where + ": output '" + sidecar_.output_names[k] + "' has an unexpected element type");
    }
  }

  Ort::Env env_;
  Ort::MemoryInfo mem_;
  Ort::Session session_{nullptr};
  Sidecar sidecar_;  // a copy: in_names_/out_names_ point into its strings
  int threads_;
  std::vector<const char*> in_names_, out_names_;
};

}  // namespace

std::unique_ptr<Detector> make_ort_detector(const OrtBackendOptions& options, const Sidecar& sidecar) {
  return std::make_unique<OrtDetector>(options, sidecar);
}

}  // namespace sample
}  // namespace clean_deploy
