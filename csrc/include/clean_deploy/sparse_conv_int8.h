// clean_deploy/sparse_conv_int8.h: int8 sparse convolution (the kernel behind the ONNX op
// clean_deploy::SparseConvolutionInt8, docs/custom_ops.md).
//
// Symmetric quantisation (zero points 0): features int8 with one scale x_scale, weights int8 with
// one scale per output channel w_scale[co], optional int32 bias at scale x_scale * w_scale[co],
// output int8 with one scale y_scale. For every output row o and channel co:
//
//   acc   = bias[co] + sum over pairs (k, i) of sum_ci  x[i, ci] * w[co, k, ci]      (exact, int32)
//   m[co] = float32( double(x_scale) * double(w_scale[co]) / double(y_scale) )
//   y     = round_half_even( float32(acc) * m[co] )            (float32 product, IEEE round-to-nearest)
//   out   = clamp(y, relu ? 0 : -128, 127)
//
// The accumulation is integer arithmetic, so every instruction-set path (AVX-512 VNNI, AVX2,
// generic) and any thread count give the same bits; clean_deploy.quantize.reference computes the same
// in NumPy. The rulebook is the fp32 op's (build_rulebook in sparse_conv.h).
#pragma once

#include <cstdint>
#include <vector>

#include "clean_deploy/parallel.h"
#include "clean_deploy/sparse_conv.h"

namespace clean_deploy {

// Int8 weights [cout, K, cin] re-laid out for the int8 micro-kernel chosen for this CPU, with the
// per-offset column sums the VNNI path needs (it multiplies x + 128 as unsigned bytes).
struct PackedWeightsInt8 {
  int64_t cout = 0, kernel_volume = 0, cin = 0;
  int64_t offset_stride = 0;     // bytes of one kernel offset's packed weights
  int64_t max_abs_weight_sum = 0;  // max over co of sum_k,ci |w| (bounds the accumulator)
  std::vector<int8_t> data;      // layout private to the kernel (int16 pairs for AVX2)
  std::vector<int32_t> comp;     // K x cout_padded: 128 * sum_ci w[co, k, ci] (VNNI only)
};
void pack_weights_int8(const int8_t* weight, int64_t cout, int64_t kernel_volume, int64_t cin,
                       PackedWeightsInt8& packed);

// Requantisation multipliers m[co] (see above). Throws std::invalid_argument naming the scale that
// is not finite and > 0.
std::vector<float> requant_multipliers(float x_scale, const float* w_scale, int64_t cout, float y_scale);

// Throws std::invalid_argument when the int32 accumulator of some output could overflow:
// max_abs_weight_sum * 128 + |bias| must stay below 2^31.
void check_int8_accumulator(const PackedWeightsInt8& weight, const int32_t* bias);

// out (num_out x cout int8, written) as specified above. features: num_in x cin int8; bias: cout
// int32 or nullptr; multipliers: requant_multipliers(...). Deterministic for any executor.
void sparse_conv_int8_forward(const int8_t* features, const PackedWeightsInt8& weight, const int32_t* bias,
                              const float* multipliers, const RulebookView& rulebook, Activation activation,
                              int8_t* out, const Executor& executor);

// Name of the int8 micro-kernel chosen for this CPU ("avx512_vnni", "avx2" or "generic");
// CLEAN_DEPLOY_CPU_ISA=generic|avx2 lowers the choice as for the fp32 kernels.
const char* int8_isa_name();

}  // namespace clean_deploy
