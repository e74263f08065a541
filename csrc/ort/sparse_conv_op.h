// ONNX Runtime custom op clean_deploy::SparseConvolution (docs/custom_ops.md), CPU execution
// provider, running the kernels of csrc/cpu on ORT's intra-op thread pool.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "clean_deploy/sparse_conv.h"
#include "ort_common.h"

namespace clean_deploy {
namespace ort {

// Reads and checks the attributes shared by SparseConvolution and SparseConvolutionInt8
// (kernel_size, stride, padding, dilation, spatial_shape, subm, activation); throws Ort::Exception
// with `prefix` for bad ones.
ConvGeometry read_conv_attributes(const Ort::ConstKernelInfo& info, const std::string& prefix,
                                  Activation* activation);

// "input 'weight' must be <dtype> [Cout, kD, kH, kW, Cin] = [...], got shape ..." (cin < 0: unknown)
std::string weight_shape_error(const char* dtype, const std::array<int64_t, 3>& kernel, int64_t cin,
                               const std::vector<int64_t>& weight_shape);

// Sizes of one call after the input checks shared by both sparse-conv ops: features [N, Cin],
// indices [N, 4], weight [Cout, kernel_size..., Cin] (cin < 0: a constant weight checked before
// the features are known). Fails with `prefix` and the expected shape.
struct ConvSizes {
  int64_t n = 0, cin = 0, cout = 0;
};
ConvSizes check_conv_shapes(const std::string& prefix, const char* features_dtype, const char* weight_dtype,
                            const std::vector<int64_t>& features, const std::vector<int64_t>& indices,
                            const std::vector<int64_t>& weight, const std::array<int64_t, 3>& kernel);
void check_weight_kernel(const std::string& prefix, const char* weight_dtype, const std::vector<int64_t>& weight,
                         const std::array<int64_t, 3>& kernel);

// Allocates output 0 [num_out, cout] and output 1 [num_out, 4] (filled with the rulebook's output
// sites) of a sparse-conv node; returns output 0 for the kernel to write.
Ort::UnownedValue allocate_outputs(const Ort::KernelContext& ctx, const Rulebook& rulebook, int64_t cout);

// Buffers of one Compute call (rulebook, scratch, per-call packed weights), pooled per buffer type
// and reused by later calls of any node: keeping the memory mapped saves allocations and page
// faults on every call. The pool holds as many sets as calls ever ran at the same time.
template <class Buffers>
class BufferPool {
 public:
  static BufferPool& instance() {
    static BufferPool* p = new BufferPool;  // never destroyed: may be used until the process ends
    return *p;
  }
  struct Lease {
    std::unique_ptr<Buffers> b = instance().take();
    ~Lease() { instance().give(std::move(b)); }
  };

 private:
  std::unique_ptr<Buffers> take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return std::make_unique<Buffers>();
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::unique_ptr<Buffers> b) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(b));
  }
  std::mutex mu_;
  std::vector<std::unique_ptr<Buffers>> free_;
};

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
  explicit SparseConvolutionOp(bool half = false) : half_(half) {}

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

 private:
  bool half_;  // features and out_features float16 (weights and bias stay float32)
};

// The same op for float16 features (a second kernel of the node type; ONNX Runtime picks it by the
// features' type): float16 storage, float32 arithmetic, as the TensorRT plugin runs in fp16.
struct SparseConvolutionHalfOp : SparseConvolutionOp {
  SparseConvolutionHalfOp() : SparseConvolutionOp(true) {}
};

}  // namespace ort
}  // namespace clean_deploy
