// Sparse convolution forward on CPU: output-stationary gather-GEMM over the rulebook.
//
// Outputs are split into blocks of consecutive rows, one task per block, so no two tasks write the
// same output row (race-free without atomics). Inside a block, for each kernel offset k in order,
// the rows that have an input at offset k are gathered into row-pointer lists and multiplied with
// that offset's packed weights by the SGEMM micro-kernel, accumulating into the output rows (which
// stay in cache for the whole block). Every output element is bias + the offsets' contributions in
// offset order, each a dot product over Cin in channel order: the result does not depend on the
// block size, the thread count or the scheduling.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "clean_deploy/sparse_conv.h"
#include "gemm_kernels.h"

namespace clean_deploy {

namespace {

constexpr int64_t kBlockRows = 512;  // output rows per task

// Per-thread scratch reused across calls (ORT's and our pool's threads are long-lived).
struct Scratch {
  std::vector<const float*> a;
  std::vector<float*> c;
  std::vector<float> dummy_c;  // target of padding rows
};

}  // namespace

void pack_weights(const float* weight, int64_t cout, int64_t kernel_volume, int64_t cin, PackedWeights& packed) {
  if (cout < 0 || kernel_volume < 0 || cin < 0) throw std::invalid_argument("negative weight dimension");
  const detail::GemmKernel& kern = detail::select_gemm_kernel();
  packed.cout = cout;
  packed.kernel_volume = kernel_volume;
  packed.cin = cin;
  packed.panel_width = kern.nr;
  packed.offset_stride = detail::packed_weight_size(cin, cout, kern.nr);
  packed.data.resize(static_cast<size_t>(packed.offset_stride * kernel_volume));
  for (int64_t k = 0; k < kernel_volume; ++k)
    detail::pack_weight_panels(weight, cout, kernel_volume, cin, k, kern.nr, packed.data.data() + k * packed.offset_stride);
}

void sparse_conv_forward(const float* features, const PackedWeights& weight, const float* bias, const Rulebook& rb,
                         Activation activation, float* out, const Executor& executor) {
  if (static_cast<int64_t>(rb.neighbors.size()) != rb.num_out * rb.kernel_volume)
    throw std::invalid_argument("rulebook is inconsistent (neighbors.size() != num_out * kernel_volume)");
  sparse_conv_forward(features, weight, bias, RulebookView(rb), activation, out, executor);
}

void sparse_conv_forward(const float* features, const PackedWeights& weight, const float* bias, const RulebookView& rb,
                         Activation activation, float* out, const Executor& executor) {
  const int64_t M = rb.num_out, K = rb.kernel_volume, cin = weight.cin, cout = weight.cout;
  const detail::GemmKernel& kern = detail::select_gemm_kernel();
  if (weight.kernel_volume != K || weight.panel_width != kern.nr ||
      static_cast<int64_t>(weight.data.size()) != K * weight.offset_stride)
    throw std::invalid_argument("packed weights do not match the rulebook's kernel volume or this CPU's kernel");
  if (M == 0 || cout == 0) return;

  const int mr = kern.mr;
  const std::vector<float> zero_row(static_cast<size_t>(std::max<int64_t>(cin, 1)), 0.0f);
  const int32_t* nbr = rb.neighbors;
  const float* wp = weight.data.data();
  const int64_t stride = weight.offset_stride;
  const int64_t padded_cols = (cout + kern.nr - 1) / kern.nr * kern.nr;
  const int64_t tasks = (M + kBlockRows - 1) / kBlockRows;

  executor.for_each(tasks, [&](int64_t task) {
    thread_local Scratch s;
    s.a.resize(static_cast<size_t>(kBlockRows + mr + 1));
    s.c.resize(static_cast<size_t>(kBlockRows + mr + 1));
    if (static_cast<int64_t>(s.dummy_c.size()) < padded_cols) s.dummy_c.resize(static_cast<size_t>(padded_cols));
    const int64_t r0 = task * kBlockRows, r1 = std::min(M, r0 + kBlockRows);
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + r * cout;
      if (bias)
        std::copy(bias, bias + cout, o);
      else
        std::fill(o, o + cout, 0.0f);
    }
    for (int64_t k = 0; k < K; ++k) {
      // gather the rows with an input at offset k (branch-free: presence is unpredictable)
      int64_t n = 0;
      for (int64_t r = r0; r < r1; ++r) {
        const int32_t j = nbr[r * K + k];
        s.a[n] = features + static_cast<int64_t>(j < 0 ? 0 : j) * cin;
        s.c[n] = out + r * cout;
        n += j >= 0;
      }
      if (n == 0) continue;
      for (; n % mr; ++n) {  // pad the last tile: zero input row into a scratch output row
        s.a[n] = zero_row.data();
        s.c[n] = s.dummy_c.data();
      }
      kern.accumulate(s.a.data(), s.c.data(), n, wp + k * stride, cin, cout);
    }
    if (activation == Activation::kReLU) {
      for (float* o = out + r0 * cout, *e = out + r1 * cout; o < e; ++o) *o = *o < 0.0f ? 0.0f : *o;  // NaN stays NaN
    }
  });
}

void sparse_conv_forward(const float* features, int64_t cin, const float* weight, int64_t cout, const float* bias,
                         const Rulebook& rb, Activation activation, float* out, const Executor& executor) {
  PackedWeights packed;
  pack_weights(weight, cout, rb.kernel_volume, cin, packed);
  sparse_conv_forward(features, packed, bias, rb, activation, out, executor);
}

}  // namespace clean_deploy
