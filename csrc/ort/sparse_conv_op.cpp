// clean_deploy::SparseConvolution for ONNX Runtime: attribute parsing, input checks (with the op and
// node name and the expected shape in every message), output allocation and the CPU kernel call.
#include "sparse_conv_op.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "op_registry.h"
#include "rulebook_cache.h"

namespace clean_deploy {
namespace ort {

namespace {


std::array<int64_t, 3> to3(const std::vector<int64_t>& v) { return {v[0], v[1], v[2]}; }

// Buffers of one Compute call, pooled library-wide (BufferPool in sparse_conv_op.h).
struct CallBuffers {
  Rulebook rulebook;
  RulebookScratch scratch;
  PackedWeights weights;             // for non-constant weights
  std::vector<float> half_in, half_out;  // float16 features widened to float32 (and the result)
};

}  // namespace

std::string weight_shape_error(const char* dtype, const std::array<int64_t, 3>& k, int64_t cin,
                               const std::vector<int64_t>& ws) {
  return std::string("input 'weight' must be ") + dtype + " [Cout, kD, kH, kW, Cin] = [Cout, " + std::to_string(k[0]) +
         ", " + std::to_string(k[1]) + ", " + std::to_string(k[2]) + ", " + (cin < 0 ? "Cin" : std::to_string(cin)) +
         "] (kernel_size and the features' Cin), got shape " + shape_str(ws);
}

ConvSizes check_conv_shapes(const std::string& prefix, const char* features_dtype, const char* weight_dtype,
                            const std::vector<int64_t>& fs, const std::vector<int64_t>& is,
                            const std::vector<int64_t>& ws, const std::array<int64_t, 3>& k) {
  if (fs.size() != 2)
    fail(prefix, std::string("input 'features' must be ") + features_dtype + " [N, Cin], got shape " + shape_str(fs));
  ConvSizes z;
  z.n = fs[0];
  z.cin = fs[1];
  if (is.size() != 2 || is[0] != z.n || is[1] != 4)
    fail(prefix, "input 'indices' must be int32 [N, 4] = [" + std::to_string(z.n) + ", 4] (batch, z, y, x), got shape " +
                     shape_str(is));
  if (ws.size() != 5 || ws[1] != k[0] || ws[2] != k[1] || ws[3] != k[2] || ws[4] != z.cin)
    fail(prefix, weight_shape_error(weight_dtype, k, z.cin, ws));
  z.cout = ws[0];
  return z;
}

void check_weight_kernel(const std::string& prefix, const char* weight_dtype, const std::vector<int64_t>& ws,
                         const std::array<int64_t, 3>& k) {
  if (ws.size() != 5 || ws[1] != k[0] || ws[2] != k[1] || ws[3] != k[2]) fail(prefix, weight_shape_error(weight_dtype, k, -1, ws));
}

Ort::UnownedValue allocate_outputs(const Ort::KernelContext& ctx, const Rulebook& rb, int64_t cout) {
  const int64_t m = rb.num_out;
  const int64_t out_shape[2] = {m, cout};
  const int64_t idx_shape[2] = {m, 4};
  Ort::UnownedValue out_features = ctx.GetOutput(0, out_shape, 2);
  Ort::UnownedValue out_indices = ctx.GetOutput(1, idx_shape, 2);
  if (m > 0) std::memcpy(out_indices.GetTensorMutableData<int32_t>(), rb.out_indices.data(), sizeof(int32_t) * 4 * m);
  return out_features;
}

ConvGeometry read_conv_attributes(const Ort::ConstKernelInfo& info, const std::string& prefix,
                                  Activation* activation) {
  ConvGeometry g;
  // SparseConvolution and SparseConvolutionInt8 have the same attributes (tests/test_op_spec.py)
  namespace spec = op_spec::sparse_convolution;
  g.kernel = to3(ints_attr(info, spec::kernel_size, prefix));
  g.stride = to3(ints_attr(info, spec::stride, prefix));
  g.padding = to3(ints_attr(info, spec::padding, prefix));
  g.dilation = to3(ints_attr(info, spec::dilation, prefix));
  g.in_shape = to3(ints_attr(info, spec::spatial_shape, prefix));
  const int64_t subm = int_attr(info, spec::subm, prefix);
  if (subm != 0 && subm != 1) fail(prefix, "attribute 'subm' must be 0 or 1, got " + std::to_string(subm));
  g.subm = subm == 1;
  try {
    g.validate();
    *activation = parse_activation(string_attr(info, spec::activation, prefix));
  } catch (const std::invalid_argument& e) {
    fail(prefix, e.what());
  }
  return g;
}

SparseConvolutionKernel::SparseConvolutionKernel(const OrtKernelInfo* info_ptr) {
  const Ort::ConstKernelInfo info(info_ptr);
  prefix_ = op_prefix(SparseConvolutionOp::kName, info);
  geometry_ = read_conv_attributes(info, prefix_, &activation_);
  int is_constant = 0;
  const Ort::ConstValue w = info.GetTensorConstantInput(2, &is_constant);
  if (is_constant && static_cast<const OrtValue*>(w)) {
    const auto ws = w.GetTensorTypeAndShapeInfo().GetShape();
    check_weight_kernel(prefix_, "float32", ws, geometry_.kernel);
    auto packed = std::make_unique<PackedWeights>();
    pack_weights(w.GetTensorData<float>(), ws[0], geometry_.kernel_volume(), ws[4], *packed);
    constant_weights_ = std::move(packed);
  }
}

OrtStatusPtr SparseConvolutionKernel::ComputeV2(OrtKernelContext* context) noexcept {
  return guarded(prefix_, [&] { compute(context); });
}

void SparseConvolutionKernel::compute(OrtKernelContext* context) const {
  const Ort::KernelContext ctx(context);
  const size_t n_inputs = ctx.GetInputCount();
  const Ort::ConstValue features = ctx.GetInput(0);
  const Ort::ConstValue indices = ctx.GetInput(1);
  const Ort::ConstValue weight = ctx.GetInput(2);
  Ort::ConstValue bias{nullptr};
  if (n_inputs > 3) bias = ctx.GetInput(3);
  if (!static_cast<const OrtValue*>(features) || !static_cast<const OrtValue*>(indices) ||
      !static_cast<const OrtValue*>(weight))
    fail(prefix_, "inputs 'features', 'indices' and 'weight' are required");

  const bool half = features.GetTensorTypeAndShapeInfo().GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  const ConvSizes z = check_conv_shapes(prefix_, half ? "float16" : "float32", "float32",
                                        features.GetTensorTypeAndShapeInfo().GetShape(),
                                        indices.GetTensorTypeAndShapeInfo().GetShape(),
                                        weight.GetTensorTypeAndShapeInfo().GetShape(), geometry_.kernel);
  const int64_t n = z.n, cin = z.cin, cout = z.cout;
  const float* bias_data = nullptr;
  if (static_cast<const OrtValue*>(bias)) {
    const auto bs = bias.GetTensorTypeAndShapeInfo().GetShape();
    if (bs.size() != 1 || bs[0] != cout)
      fail(prefix_, "input 'bias' must be float32 [Cout] = [" + std::to_string(cout) + "], got shape " + shape_str(bs));
    bias_data = bias.GetTensorData<float>();
  }

  const OrtExecutor executor(ctx);
  BufferPool<CallBuffers>::Lease lease;
  std::shared_ptr<const Rulebook> cached;
  const Rulebook& rb = acquire_rulebook(indices.GetTensorData<int32_t>(), n, geometry_, executor, lease.b->rulebook,
                                        lease.b->scratch, cached);
  const PackedWeights* packed = constant_weights_.get();
  if (!packed) {
    pack_weights(weight.GetTensorData<float>(), cout, geometry_.kernel_volume(), cin, lease.b->weights);
    packed = &lease.b->weights;
  }
  const int64_t m = rb.num_out;
  Ort::UnownedValue out_features = allocate_outputs(ctx, rb, cout);
  if (!half) {
    sparse_conv_forward(features.GetTensorData<float>(), *packed, bias_data, rb, activation_,
                        out_features.GetTensorMutableData<float>(), executor);
    return;
  }
  // float16 storage, float32 arithmetic (as the CUDA kernel and the TensorRT plugin in fp16): widen,
  // run the float kernel, round the result to float16 (nearest even)
  std::vector<float>& in = lease.b->half_in;
  std::vector<float>& out = lease.b->half_out;
  in.resize(static_cast<size_t>(n * cin));
  out.resize(static_cast<size_t>(m * cout));
  const Ort::Float16_t* f16 = features.GetTensorData<Ort::Float16_t>();
  for (int64_t i = 0; i < n * cin; ++i) in[i] = f16[i].ToFloat();
  sparse_conv_forward(in.data(), *packed, bias_data, rb, activation_, out.data(), executor);
  Ort::Float16_t* o16 = out_features.GetTensorMutableData<Ort::Float16_t>();
  for (int64_t i = 0; i < m * cout; ++i) o16[i] = Ort::Float16_t(out[i]);
}

OrtStatusPtr SparseConvolutionOp::CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info,
                                                 void** kernel) const noexcept {
  return guarded(std::string(kDomain) + "::" + kName, [&] { *kernel = new SparseConvolutionKernel(info); });
}

ONNXTensorElementDataType SparseConvolutionOp::GetInputType(size_t index) const {
  if (index == 0 && half_) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

OrtCustomOpInputOutputCharacteristic SparseConvolutionOp::GetInputCharacteristic(size_t index) const {
  return index == 3 ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                    : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
}

ONNXTensorElementDataType SparseConvolutionOp::GetOutputType(size_t index) const {
  if (index == 0 && half_) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

}  // namespace ort
}  // namespace clean_deploy

CLEAN_DEPLOY_REGISTER_OP(clean_deploy::ort::SparseConvolutionOp)
CLEAN_DEPLOY_REGISTER_OP(clean_deploy::ort::SparseConvolutionHalfOp)
