// ONNX Runtime custom op clean_deploy::SparseConvolution (docs/custom_ops.md), CPU execution
// provider, running the kernels of csrc/cpu on ORT's intra-op thread pool.
#pragma once

#include <memory>

#include "clean_deploy/sparse_conv.h"
#include "ort_common.h"

namespace clean_deploy {
namespace ort {

class SparseConvolutionKernel {
 public:
  // Reads and checks the attributes; throws Ort::Exception for bad ones.
  explicit SparseConvolutionKernel(const OrtKernelInfo* info);
  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept;

 private:
  void compute(OrtKernelContext* context) const;

  std::string prefix_;  // "clean_deploy::SparseConvolution (node 'x')" for error messages
  ConvGeometry geometry_;
  Activation activation_ = Activation::kNone;
  // weights packed once at session creation when the weight input is a constant initializer
  std::unique_ptr<const PackedWeights> constant_weights_;
};

struct SparseConvolutionOp : Ort::CustomOpBase<SparseConvolutionOp, SparseConvolutionKernel, true> {
  static constexpr const char* kName = "SparseConvolution";

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept;
  const char* GetName() const { return kName; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }

  // inputs: features float [N, Cin], indices int32 [N, 4], weight float [Cout, kD, kH, kW, Cin],
  // bias float [Cout] (optional)
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t index) const;
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const;
  // outputs: out_features float [M, Cout], out_indices int32 [M, 4]
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t index) const;
};

}  // namespace ort
}  // namespace clean_deploy
