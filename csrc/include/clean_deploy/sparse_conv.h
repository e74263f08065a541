// clean_deploy/sparse_conv.h: public API of the CPU sparse convolution (spconv 2.x SubMConv3d /
// SparseConv3d forward), the kernel behind the ONNX op clean_deploy::SparseConvolution
// (docs/custom_ops.md is the specification).
//
// Two steps, so that a caller can size its outputs in between:
//   Rulebook rb = build_rulebook(indices, n, geometry, executor);   // output sites + pairs
//   sparse_conv_forward(features, cin, weight, cout, bias, rb, activation, out, executor);
// Callers that run many convs can keep a Rulebook + RulebookScratch and pre-packed weights
// (pack_weights) across calls: reused buffers save allocations and page faults.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "clean_deploy/parallel.h"

namespace clean_deploy {

enum class Activation { kNone, kReLU };

// Parses "none" / "relu"; throws std::invalid_argument otherwise.
Activation parse_activation(const std::string& name);

// Geometry of one sparse conv layer. All arrays are in (z, y, x) order.
struct ConvGeometry {
  std::array<int64_t, 3> kernel{1, 1, 1};
  std::array<int64_t, 3> stride{1, 1, 1};
  std::array<int64_t, 3> padding{0, 0, 0};
  std::array<int64_t, 3> dilation{1, 1, 1};
  std::array<int64_t, 3> in_shape{0, 0, 0};  // spatial shape D, H, W of the input grid
  bool subm = false;

  // Throws std::invalid_argument with a message naming the bad field.
  void validate() const;
  int64_t kernel_volume() const { return kernel[0] * kernel[1] * kernel[2]; }
  // Output spatial shape: in_shape for submanifold convs, else
  // floor((in + 2p - d(k-1) - 1) / s) + 1 per axis.
  std::array<int64_t, 3> out_shape() const;

  // From the flat form of the C interfaces: 15 int64 = kernel[3], stride[3], padding[3],
  // dilation[3], in_shape[3] (z, y, x).
  static ConvGeometry from_flat(const int64_t* g15, bool subm) {
    ConvGeometry g;
    for (int a = 0; a < 3; ++a) {
      g.kernel[a] = g15[a];
      g.stride[a] = g15[3 + a];
      g.padding[a] = g15[6 + a];
      g.dilation[a] = g15[9 + a];
      g.in_shape[a] = g15[12 + a];
    }
    g.subm = subm;
    return g;
  }
};

// Input/output site pairs of one conv call, stored output-major: neighbors[o * K + k] is the
// input row feeding output row o through kernel offset k = (kz * kH + ky) * kW + kx, or -1.
struct Rulebook {
  int64_t num_in = 0;
  int64_t num_out = 0;
  int64_t kernel_volume = 0;
  std::vector<int32_t> out_indices;  // num_out x 4: (batch, z, y, x); for subm a copy of the input
  std::vector<int32_t> neighbors;    // num_out x kernel_volume

  // Number of pairs per kernel offset (length kernel_volume).
  std::vector<int64_t> pair_counts() const;
};

// Temporary buffers of build_rulebook, kept between calls to reuse their memory.
struct RulebookScratch {
  std::vector<int64_t> keys, key_tmp;
  std::vector<int32_t> rows, row_tmp, cand_row, cand_k, rank;
  std::vector<uint64_t> bits;
};

// Builds the rulebook of a conv over the active sites `indices` (n x 4, int32, (b, z, y, x),
// rows unique, 0 <= b, coordinates inside geometry.in_shape) into `rulebook` (its buffers are
// reused).
//  - subm: outputs are the inputs, same order.
//  - regular: outputs are all sites o (0 <= o < out_shape) with some input at
//    o * stride - padding + k * dilation; sorted by (b, z, y, x).
// Throws std::invalid_argument for bad geometry, out-of-range or duplicate indices.
void build_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& geometry, const Executor& executor,
                    Rulebook& rulebook, RulebookScratch& scratch);
Rulebook build_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& geometry,
                        const Executor& executor);

// Weights [cout, K, cin] (spconv layout [Cout, kD, kH, kW, Cin]) re-laid out for the SGEMM kernel
// chosen for this CPU. Pack once per weight tensor and reuse.
struct PackedWeights {
  int64_t cout = 0, kernel_volume = 0, cin = 0;
  int64_t panel_width = 0;    // columns per panel (the kernel's nr)
  int64_t offset_stride = 0;  // floats per kernel offset
  std::vector<float> data;
};
void pack_weights(const float* weight, int64_t cout, int64_t kernel_volume, int64_t cin, PackedWeights& packed);

// A neighbour table held elsewhere (e.g. in a torch tensor): neighbors[o * kernel_volume + k] as in
// Rulebook, num_out rows. The training path keeps its rulebooks in torch tensors and passes views.
struct RulebookView {
  int64_t num_in = 0;
  int64_t num_out = 0;
  int64_t kernel_volume = 0;
  const int32_t* neighbors = nullptr;
  RulebookView() = default;
  RulebookView(int64_t in, int64_t out, int64_t k, const int32_t* nbr)
      : num_in(in), num_out(out), kernel_volume(k), neighbors(nbr) {}
  explicit RulebookView(const Rulebook& rb)
      : num_in(rb.num_in), num_out(rb.num_out), kernel_volume(rb.kernel_volume), neighbors(rb.neighbors.data()) {}
};

// out[o] = act(bias + sum_k W[:, k, :] . features[neighbors[o, k]]) for every output row o.
//  features: num_in x cin; bias: cout floats or nullptr; out: num_out x cout (written, need not
//  be initialised). Deterministic: the result does not depend on the executor's thread count.
void sparse_conv_forward(const float* features, const PackedWeights& weight, const float* bias,
                         const Rulebook& rulebook, Activation activation, float* out, const Executor& executor);
void sparse_conv_forward(const float* features, const PackedWeights& weight, const float* bias,
                         const RulebookView& rulebook, Activation activation, float* out, const Executor& executor);
// Same with unpacked weights (cout x K x cin), packed on the fly.
void sparse_conv_forward(const float* features, int64_t cin, const float* weight, int64_t cout,
                         const float* bias, const Rulebook& rulebook, Activation activation,
                         float* out, const Executor& executor);

// ---- training: backward of sparse_conv_forward (activation none) -----------------------------
// All functions below are deterministic: every output element is computed by one task in a fixed
// order of operations, so results are bitwise identical for any thread count. Float versions run
// on the SGEMM micro-kernels; double versions (tests, gradcheck) are plain loops.

// Input-major table of a rulebook: transposed[i * K + k] = o where neighbors[o * K + k] == i, else
// -1 (unique: at most one output meets input i through offset k). transposed: num_in x K int32.
// Throws std::invalid_argument for a neighbour outside [-1, num_in) or a pair seen twice.
void transpose_rulebook(const RulebookView& rulebook, int32_t* transposed, const Executor& executor);

// grad_features (num_in x cin, written) = sum over pairs (o, k, i) of W[:, k, :]^T grad_out[o]:
// a forward conv of grad_out over the transposed table with transposed weights.
//  weight: cout x K x cin (spconv layout); transposed: num_in x K (transpose_rulebook).
void sparse_conv_backward_input(const float* grad_out, const float* weight, int64_t cout, int64_t cin,
                                const RulebookView& transposed, float* grad_features, const Executor& executor);
void sparse_conv_backward_input(const double* grad_out, const double* weight, int64_t cout, int64_t cin,
                                const RulebookView& transposed, double* grad_features, const Executor& executor);

// grad_weight (cout x K x cin, written)[co, k, ci] = sum over output rows o with an input
// i = neighbors[o, k] of grad_out[o, co] * features[i, ci]. Float: outputs in fixed blocks of 2048
// rows, each block's pairs summed in output order, the block partials added in block order (memory:
// one cin x cout x K partial per block); double: one task per kernel offset, rows in order.
void sparse_conv_backward_weight(const float* features, int64_t cin, const float* grad_out, int64_t cout,
                                 const RulebookView& rulebook, float* grad_weight, const Executor& executor);
void sparse_conv_backward_weight(const double* features, int64_t cin, const double* grad_out, int64_t cout,
                                 const RulebookView& rulebook, double* grad_weight, const Executor& executor);

// Double-precision forward (plain loops; tests and gradcheck). Activation none.
void sparse_conv_forward(const double* features, int64_t cin, const double* weight, int64_t cout,
                         const double* bias, const RulebookView& rulebook, double* out, const Executor& executor);

// grad_bias[co] (written) = sum over rows o in order of grad_out[o, co].
void sum_rows(const float* grad_out, int64_t rows, int64_t cols, float* grad_bias);
void sum_rows(const double* grad_out, int64_t rows, int64_t cols, double* grad_bias);

// Name of the SGEMM micro-kernel chosen for this CPU ("avx512", "avx2" or "generic"); the
// environment variable CLEAN_DEPLOY_CPU_ISA=generic|avx2|avx512 lowers the choice (for tests).
const char* gemm_isa_name();

}  // namespace clean_deploy
