// A fake nvinfer1::IExprBuilder for driving IPluginV3OneBuild::getOutputShapes without TensorRT
// (no libnvinfer): every dimension expression carries one number, evaluated eagerly. Give the
// inputs' dynamic extents the values of interest (a profile's max, or one frame's sizes) and each
// output extent is the plugin's expression evaluated there; a declared size tensor evaluates to its
// upper bound and is recorded (output index, opt, upper, whether opt is a build-time constant).
// Shared by plugin_harness.cpp (bounds of whole networks) and plugin_enqueue_emu.cpp (output
// buffers of one emulated enqueue).
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace fake_trt {

struct DimImpl final : nvinfer1::apiv::VDimensionExpr {
  int64_t value = 0;
  bool constant = false, size_tensor = false;
  bool isConstant() const override { return constant; }
  int64_t getConstantValue() const override { return constant ? value : -1; }
  bool isSizeTensor() const override { return size_tensor; }
};

struct Dim final : nvinfer1::IDimensionExpr {
  explicit Dim(DimImpl* impl) { mImpl = impl; }
  DimImpl* impl() const { return static_cast<DimImpl*>(mImpl); }
};

// The value of an expression made by a BuilderImpl.
inline int64_t value_of(const nvinfer1::IDimensionExpr& e) { return static_cast<const Dim&>(e).impl()->value; }

struct SizeTensorDecl {
  int32_t output = -1;
  int64_t opt = -1, upper = -1;
  bool opt_constant = false;
};

struct BuilderImpl final : nvinfer1::apiv::VExprBuilder {
  std::vector<std::unique_ptr<DimImpl>> impls;
  std::vector<std::unique_ptr<Dim>> dims;
  std::vector<SizeTensorDecl> declared;

  const nvinfer1::IDimensionExpr* make(int64_t v, bool constant, bool size_tensor = false) {
    impls.push_back(std::make_unique<DimImpl>());
    impls.back()->value = v;
    impls.back()->constant = constant;
    impls.back()->size_tensor = size_tensor;
    dims.push_back(std::make_unique<Dim>(impls.back().get()));
    return dims.back().get();
  }
  const nvinfer1::IDimensionExpr* constant(int64_t value) override { return make(value, true); }
  const nvinfer1::IDimensionExpr* operation(nvinfer1::DimensionOperation op, const nvinfer1::IDimensionExpr& a,
                                            const nvinfer1::IDimensionExpr& b) override {
    using nvinfer1::DimensionOperation;
    const int64_t x = value_of(a), y = value_of(b);
    int64_t v = 0;
    switch (op) {
      case DimensionOperation::kSUM: v = x + y; break;
      case DimensionOperation::kPROD: v = x * y; break;
      case DimensionOperation::kMAX: v = x > y ? x : y; break;
      case DimensionOperation::kMIN: v = x < y ? x : y; break;
      case DimensionOperation::kSUB: v = x - y; break;
      case DimensionOperation::kFLOOR_DIV: v = x / y; break;
      case DimensionOperation::kCEIL_DIV: v = (x + y - 1) / y; break;
      default: v = -1;
    }
    return make(v, a.isConstant() && b.isConstant());
  }
  const nvinfer1::IDimensionExpr* declareSizeTensor(int32_t output, const nvinfer1::IDimensionExpr& opt,
                                                    const nvinfer1::IDimensionExpr& upper) override {
    declared.push_back({output, value_of(opt), value_of(upper), opt.isConstant()});
    return make(value_of(upper), false, true);
  }
};

struct Builder final : nvinfer1::IExprBuilder {
  explicit Builder(BuilderImpl* impl) { mImpl = impl; }
};

}  // namespace fake_trt
