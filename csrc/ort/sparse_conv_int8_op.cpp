// clean_deploy::SparseConvolutionInt8 for ONNX Runtime: input checks (op and node name and the
// expected shape in every message), output allocation and the int8 CPU kernel call. Attributes and
// rulebook are the float op's (sparse_conv_op.h).
#include "sparse_conv_int8_op.h"

#include <stdexcept>
#include <vector>

#include "op_registry.h"
#include "rulebook_cache.h"
#include "sparse_conv_op.h"

namespace clean_deploy {
namespace ort {

namespace {

struct CallBuffersInt8 {
  Rulebook rulebook;
  RulebookScratch scratch;
  PackedWeightsInt8 weights;  // for non-constant weights
};

enum Input { kFeatures = 0, kIndices, kXScale, kWeight, kWScale, kYScale, kBias };

float scalar_input(const Ort::ConstValue& v, const char* name, const std::string& prefix) {
  const auto info = v.GetTensorTypeAndShapeInfo();
  if (info.GetElementCount() != 1)
    fail(prefix, std::string("input '") + name + "' must be a float32 scalar, got shape " + shape_str(info.GetShape()));
  return v.GetTensorData<float>()[0];
}

}  // namespace

SparseConvolutionInt8Kernel::SparseConvolutionInt8Kernel(const OrtKernelInfo* info_ptr) {
  const Ort::ConstKernelInfo info(info_ptr);
  prefix_ = op_prefix(SparseConvolutionInt8Op::kName, info);
  geometry_ = read_conv_attributes(info, prefix_, &activation_);
  int is_constant = 0;
  const Ort::ConstValue w = info.GetTensorConstantInput(kWeight, &is_constant);
  if (is_constant && static_cast<const OrtValue*>(w)) {
    const auto ws = w.GetTensorTypeAndShapeInfo().GetShape();
    check_weight_kernel(prefix_, "int8", ws, geometry_.kernel);
    auto packed = std::make_unique<PackedWeightsInt8>();
    pack_weights_int8(w.GetTensorData<int8_t>(), ws[0], geometry_.kernel_volume(), ws[4], *packed);
    constant_weights_ = std::move(packed);
  }
}

OrtStatusPtr SparseConvolutionInt8Kernel::ComputeV2(OrtKernelContext* context) noexcept {
  return guarded(prefix_, [&] { compute(context); });
}

void SparseConvolutionInt8Kernel::compute(OrtKernelContext* context) const {
  const Ort::KernelContext ctx(context);
  const Ort::ConstValue features = ctx.GetInput(kFeatures);
  const Ort::ConstValue indices = ctx.GetInput(kIndices);
  const Ort::ConstValue weight = ctx.GetInput(kWeight);
  const Ort::ConstValue x_scale = ctx.GetInput(kXScale);
  const Ort::ConstValue w_scale = ctx.GetInput(kWScale);
  const Ort::ConstValue y_scale = ctx.GetInput(kYScale);
  Ort::ConstValue bias{nullptr};
  if (ctx.GetInputCount() > kBias) bias = ctx.GetInput(kBias);
  for (const auto* v : {&features, &indices, &weight, &x_scale, &w_scale, &y_scale})
    if (!static_cast<const OrtValue*>(*v))
      fail(prefix_, "inputs 'features', 'indices', 'x_scale', 'weight', 'w_scale' and 'y_scale' are required");

  const ConvSizes z = check_conv_shapes(prefix_, "int8", "int8", features.GetTensorTypeAndShapeInfo().GetShape(),
                                        indices.GetTensorTypeAndShapeInfo().GetShape(),
                                        weight.GetTensorTypeAndShapeInfo().GetShape(), geometry_.kernel);
  const int64_t n = z.n, cin = z.cin, cout = z.cout;
  const auto wss = w_scale.GetTensorTypeAndShapeInfo().GetShape();
  if (wss.size() != 1 || wss[0] != cout)
    fail(prefix_, "input 'w_scale' must be float32 [Cout] = [" + std::to_string(cout) + "] (one scale per output "
                  "channel), got shape " + shape_str(wss));
  const int32_t* bias_data = nullptr;
  if (static_cast<const OrtValue*>(bias)) {
    const auto bs = bias.GetTensorTypeAndShapeInfo().GetShape();
    if (bs.size() != 1 || bs[0] != cout)
      fail(prefix_, "input 'bias' must be int32 [Cout] = [" + std::to_string(cout) + "], got shape " + shape_str(bs));
    bias_data = bias.GetTensorData<int32_t>();
  }
  std::vector<float> multipliers;
  try {
    multipliers = requant_multipliers(scalar_input(x_scale, "x_scale", prefix_), w_scale.GetTensorData<float>(), cout,
                                      scalar_input(y_scale, "y_scale", prefix_));
  } catch (const std::invalid_argument& e) {
    fail(prefix_, std::string("inputs ") + e.what());
  }

  const OrtExecutor executor(ctx);
  BufferPool<CallBuffersInt8>::Lease lease;
  std::shared_ptr<const Rulebook> cached;
  const Rulebook& rb = acquire_rulebook(indices.GetTensorData<int32_t>(), n, geometry_, executor, lease.b->rulebook,
                                        lease.b->scratch, cached);
  const PackedWeightsInt8* packed = constant_weights_.get();
  if (!packed) {
    pack_weights_int8(weight.GetTensorData<int8_t>(), cout, geometry_.kernel_volume(), cin, lease.b->weights);
    packed = &lease.b->weights;
  }
  Ort::UnownedValue out_features = allocate_outputs(ctx, rb, cout);
  sparse_conv_int8_forward(features.GetTensorData<int8_t>(), *packed, bias_data, multipliers.data(), RulebookView(rb),
                           activation_, out_features.GetTensorMutableData<int8_t>(), executor);
}

OrtStatusPtr SparseConvolutionInt8Op::CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info,
                                                     void** kernel) const noexcept {
  return guarded(std::string(kDomain) + "::" + kName, [&] { *kernel = new SparseConvolutionInt8Kernel(info); });
}

ONNXTensorElementDataType SparseConvolutionInt8Op::GetInputType(size_t index) const {
  switch (index) {
    case kFeatures:
    case kWeight: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case kIndices:
    case kBias: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    default: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
}

OrtCustomOpInputOutputCharacteristic SparseConvolutionInt8Op::GetInputCharacteristic(size_t index) const {
  return index == kBias ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                        : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
}

ONNXTensorElementDataType SparseConvolutionInt8Op::GetOutputType(size_t index) const {
  return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
}

}  // namespace ort
}  // namespace clean_deploy

CLEAN_DEPLOY_REGISTER_OP(clean_deploy::ort::SparseConvolutionInt8Op)
