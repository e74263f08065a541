// ONNX Runtime custom op clean_deploy::SparseConvolutionInt8 (docs/custom_ops.md): the int8 sparse
// convolution of csrc/cpu/sparse_conv_int8.cpp on ORT's intra-op thread pool.
#pragma once

#include <memory>
#include <string>

#include "clean_deploy/sparse_conv_int8.h"
#include "ort_common.h"

namespace clean_deploy {
namespace ort {

class SparseConvolutionInt8Kernel {
 public:
  explicit SparseConvolutionInt8Kernel(const OrtKernelInfo* info);
  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept;

 private:
  void compute(OrtKernelContext* context) const;

  std::string prefix_;
  ConvGeometry geometry_;
  Activation activation_ = Activation::kNone;
  std::unique_ptr<const PackedWeightsInt8> constant_weights_;  // packed at session creation
};

struct SparseConvolutionInt8Op : Ort::CustomOpBase<SparseConvolutionInt8Op, SparseConvolutionInt8Kernel, true> {
  static constexpr const char* kName = "SparseConvolutionInt8";

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept;
  const char* GetName() const { return kName; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }

  // inputs: features int8 [N, Cin], indices int32 [N, 4], x_scale float [] , weight int8
  // [Cout, kD, kH, kW, Cin], w_scale float [Cout], y_scale float [], bias int32 [Cout] (optional)
  size_t GetInputTypeCount() const { return 7; }
  ONNXTensorElementDataType GetInputType(size_t index) const;
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const;
  // outputs: out_features int8 [M, Cout], out_indices int32 [M, 4]
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t index) const;
};

}  // namespace ort
}  // namespace clean_deploy
