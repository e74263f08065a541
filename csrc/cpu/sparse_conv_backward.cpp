// Sparse convolution backward on CPU (the training path), and a double-precision forward.
//
// Input gradient: grad_in[i] = sum over pairs (o, k) with neighbors[o, k] == i of W_k^T grad_out[o].
// With the input-major (transposed) table this is again an output-stationary gather-GEMM (the
// forward kernel with transposed weights): each task owns a block of input rows, no atomics.
//
// Weight gradient: dW_k = sum over pairs (o, i) of offset k of grad_out[o] features[i]^T. One task
// per kernel offset owns dW_k; it walks the pairs in output order in chunks: the chunk's feature
// rows are gathered transposed (cin x L), its grad_out rows packed as SGEMM weight panels (L x cout),
// and the micro-kernel accumulates T_k (cin x cout) += F^T G. Every element of T_k is one fused
// multiply-add chain over the pairs in output order whatever the chunking, so the result depends
// neither on the thread count nor on the chunk size.
#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "clean_deploy/sparse_conv.h"
#include "gemm_kernels.h"

namespace clean_deploy {

namespace {

constexpr int64_t kRowBlock = 512;   // rows per task (transpose, double forward/backward)
constexpr int64_t kPairChunk = 256;  // pairs per weight-gradient chunk

void check_view(const RulebookView& rb, const char* what) {
  if (rb.num_in < 0 || rb.num_out < 0 || rb.kernel_volume <= 0)
    throw std::invalid_argument(std::string(what) + ": bad rulebook sizes");
  if (rb.num_out > 0 && !rb.neighbors) throw std::invalid_argument(std::string(what) + ": neighbour table is null");
}

// transposed weights: wt[ci, k, co] = w[co, k, ci]
template <class T>
std::vector<T> transpose_weight(const T* w, int64_t cout, int64_t K, int64_t cin) {
  std::vector<T> wt(static_cast<size_t>(cout * K * cin));
  for (int64_t co = 0; co < cout; ++co)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t ci = 0; ci < cin; ++ci) wt[(ci * K + k) * cout + co] = w[(co * K + k) * cin + ci];
  return wt;
}

// Plain-loop gather conv: out[o] = bias + sum_k W[:, k, :] . x[nbr[o, k]] (double precision path).
template <class T>
void gather_conv_loops(const T* x, int64_t cin, const T* w, int64_t cout, const T* bias, const RulebookView& rb, T* out,
                       const Executor& executor) {
  const int64_t M = rb.num_out, K = rb.kernel_volume;
  const int64_t tasks = (M + kRowBlock - 1) / kRowBlock;
  executor.for_each(tasks, [&](int64_t task) {
    const int64_t r0 = task * kRowBlock, r1 = std::min(M, r0 + kRowBlock);
    for (int64_t o = r0; o < r1; ++o) {
      T* y = out + o * cout;
      for (int64_t co = 0; co < cout; ++co) y[co] = bias ? bias[co] : T(0);
      for (int64_t k = 0; k < K; ++k) {
        const int32_t i = rb.neighbors[o * K + k];
        if (i < 0) continue;
        const T* xi = x + static_cast<int64_t>(i) * cin;
        for (int64_t co = 0; co < cout; ++co) {
          const T* wk = w + (co * K + k) * cin;
          T acc = T(0);
          for (int64_t ci = 0; ci < cin; ++ci) acc += wk[ci] * xi[ci];
          y[co] += acc;
        }
      }
    }
  });
}

}  // namespace

void transpose_rulebook(const RulebookView& rb, int32_t* transposed, const Executor& executor) {
  check_view(rb, "transpose_rulebook");
  const int64_t M = rb.num_out, K = rb.kernel_volume, N = rb.num_in;
  std::fill(transposed, transposed + N * K, -1);
  // Each (i, k) is written by the one output that meets i through k: tasks write disjoint cells.
  // A corrupt table (neighbour out of range) is reported; a pair seen twice is found below.
  const int64_t tasks = (M + kRowBlock - 1) / kRowBlock;
  executor.for_each(tasks, [&](int64_t task) {
    const int64_t r0 = task * kRowBlock, r1 = std::min(M, r0 + kRowBlock);
    for (int64_t o = r0; o < r1; ++o) {
      for (int64_t k = 0; k < K; ++k) {
        const int32_t i = rb.neighbors[o * K + k];
        if (i < -1 || i >= N) {
          std::ostringstream msg;
          msg << "transpose_rulebook: neighbors[" << o << ", " << k << "] = " << i << " is outside [-1, " << N << ")";
          throw std::invalid_argument(msg.str());
        }
        if (i >= 0) transposed[static_cast<int64_t>(i) * K + k] = static_cast<int32_t>(o);
      }
    }
  });
  // count check: as many pairs in both tables (a duplicate (i, k) would have been overwritten)
  int64_t pairs = 0, tpairs = 0;
  for (int64_t j = 0; j < M * K; ++j) pairs += rb.neighbors[j] >= 0;
  for (int64_t j = 0; j < N * K; ++j) tpairs += transposed[j] >= 0;
  if (pairs != tpairs)
    throw std::invalid_argument("transpose_rulebook: an input meets two outputs through the same kernel offset");
}

void sparse_conv_backward_input(const float* grad_out, const float* weight, int64_t cout, int64_t cin,
                                const RulebookView& transposed, float* grad_features, const Executor& executor) {
  check_view(transposed, "sparse_conv_backward_input");
  const int64_t K = transposed.kernel_volume;
  const std::vector<float> wt = transpose_weight(weight, cout, K, cin);
  PackedWeights packed;
  pack_weights(wt.data(), cin, K, cout, packed);  // as a conv from cout to cin channels
  sparse_conv_forward(grad_out, packed, nullptr, transposed, Activation::kNone, grad_features, executor);
}

void sparse_conv_backward_input(const double* grad_out, const double* weight, int64_t cout, int64_t cin,
                                const RulebookView& transposed, double* grad_features, const Executor& executor) {
  check_view(transposed, "sparse_conv_backward_input");
  const int64_t K = transposed.kernel_volume;
  const std::vector<double> wt = transpose_weight(weight, cout, K, cin);
  gather_conv_loops(grad_out, cout, wt.data(), cin, static_cast<const double*>(nullptr), transposed, grad_features,
                    executor);
}

void sparse_conv_forward(const double* features, int64_t cin, const double* weight, int64_t cout, const double* bias,
                         const RulebookView& rb, double* out, const Executor& executor) {
  check_view(rb, "sparse_conv_forward");
  gather_conv_loops(features, cin, weight, cout, bias, rb, out, executor);
}

void sparse_conv_backward_weight(const float* features, int64_t cin, const float* grad_out, int64_t cout,
                                 const RulebookView& rb, float* grad_weight, const Executor& executor) {
  check_view(rb, "sparse_conv_backward_weight");
  const int64_t M = rb.num_out, K = rb.kernel_volume;
  std::fill(grad_weight, grad_weight + cout * K * cin, 0.0f);
  if (M == 0 || cin == 0 || cout == 0) return;
  const detail::GemmKernel& kern = detail::select_gemm_kernel();
  const int mr = kern.mr, nr = kern.nr;
  const int64_t panels = (cout + nr - 1) / nr;
  const int64_t rows_padded = (cin + mr - 1) / mr * mr;

  executor.for_each(K, [&](int64_t k) {
    std::vector<int32_t> outs, ins;  // the pairs of offset k, in output order
    outs.reserve(static_cast<size_t>(std::min<int64_t>(M, 1 << 16)));
    ins.reserve(outs.capacity());
    for (int64_t o = 0; o < M; ++o) {
      const int32_t i = rb.neighbors[o * K + k];
      if (i >= 0) outs.push_back(static_cast<int32_t>(o)), ins.push_back(i);
    }
    const int64_t P = static_cast<int64_t>(outs.size());
    if (P == 0) return;
    std::vector<float> acc(static_cast<size_t>(rows_padded * cout), 0.0f);  // T_k: cin (padded) x cout
    std::vector<float> ft(static_cast<size_t>(rows_padded * kPairChunk), 0.0f);  // F^T chunk, padding rows 0
    std::vector<float> gp(static_cast<size_t>(panels * kPairChunk * nr), 0.0f);  // G chunk as weight panels
    std::vector<const float*> a_rows(static_cast<size_t>(rows_padded));
    std::vector<float*> c_rows(static_cast<size_t>(rows_padded));
    for (int64_t c = 0; c < rows_padded; ++c) c_rows[c] = acc.data() + c * cout;
    for (int64_t p0 = 0; p0 < P; p0 += kPairChunk) {
      const int64_t L = std::min(kPairChunk, P - p0);
      for (int64_t r = 0; r < L; ++r) {
        const float* f = features + static_cast<int64_t>(ins[p0 + r]) * cin;
        for (int64_t c = 0; c < cin; ++c) ft[c * L + r] = f[c];
      }
      for (int64_t c = cin; c < rows_padded; ++c) std::fill(ft.begin() + c * L, ft.begin() + (c + 1) * L, 0.0f);
      for (int64_t p = 0; p < panels; ++p) {
        float* d = gp.data() + p * L * nr;
        const int64_t j1 = std::min<int64_t>(nr, cout - p * nr);
        for (int64_t r = 0; r < L; ++r) {
          const float* g = grad_out + static_cast<int64_t>(outs[p0 + r]) * cout + p * nr;
          float* dr = d + r * nr;
          for (int64_t j = 0; j < j1; ++j) dr[j] = g[j];
          for (int64_t j = j1; j < nr; ++j) dr[j] = 0.0f;
        }
      }
      for (int64_t c = 0; c < rows_padded; ++c) a_rows[c] = ft.data() + c * L;
      kern.accumulate(a_rows.data(), c_rows.data(), rows_padded, gp.data(), L, cout);
    }
    for (int64_t co = 0; co < cout; ++co)
      for (int64_t c = 0; c < cin; ++c) grad_weight[(co * K + k) * cin + c] = acc[c * cout + co];
  });
}

void sparse_conv_backward_weight(const double* features, int64_t cin, const double* grad_out, int64_t cout,
                                 const RulebookView& rb, double* grad_weight, const Executor& executor) {
  check_view(rb, "sparse_conv_backward_weight");
  const int64_t M = rb.num_out, K = rb.kernel_volume;
  std::fill(grad_weight, grad_weight + cout * K * cin, 0.0);
  executor.for_each(K, [&](int64_t k) {
    for (int64_t o = 0; o < M; ++o) {
      const int32_t i = rb.neighbors[o * K + k];
      if (i < 0) continue;
      const double* f = features + static_cast<int64_t>(i) * cin;
      const double* g = grad_out + o * cout;
      for (int64_t co = 0; co < cout; ++co) {
        double* gw = grad_weight + (co * K + k) * cin;
        for (int64_t c = 0; c < cin; ++c) gw[c] += g[co] * f[c];
      }
    }
  });
}

void sum_rows(const float* grad_out, int64_t rows, int64_t cols, float* grad_bias) {
  std::fill(grad_bias, grad_bias + cols, 0.0f);
  for (int64_t o = 0; o < rows; ++o)
    for (int64_t c = 0; c < cols; ++c) grad_bias[c] += grad_out[o * cols + c];
}

void sum_rows(const double* grad_out, int64_t rows, int64_t cols, double* grad_bias) {
  std::fill(grad_bias, grad_bias + cols, 0.0);
  for (int64_t o = 0; o < rows; ++o)
    for (int64_t c = 0; c < cols; ++c) grad_bias[c] += grad_out[o * cols + c];
}

}  // namespace clean_deploy
