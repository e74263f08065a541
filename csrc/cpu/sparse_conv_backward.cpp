// Sparse convolution backward on CPU (the training path), and a double-precision forward.
//
// Input gradient: grad_in[i] = sum over pairs (o, k) with neighbors[o, k] == i of W_k^T grad_out[o].
// With the input-major (transposed) table this is again an output-stationary gather-GEMM (the
// forward kernel with transposed weights): each task owns a block of input rows, no atomics.
//
// Weight gradient: dW_k = sum over pairs (o, i) of offset k of grad_out[o] features[i]^T. Outputs
// are split into fixed blocks of rows (one task each); per kernel offset a task gathers its block's
// pairs (row pointers, no copies) and the micro-kernel's outer-product accumulation sums them into
// the block's partial T_k (cin x cout) with register-blocked tiles; the partials are then added in
// block order. The block size is a constant, so every element is the same sequence of operations
// for any thread count.
#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "clean_deploy/sparse_conv.h"
#include "gemm_kernels.h"

namespace clean_deploy {

namespace {

constexpr int64_t kRowBlock = 512;   // rows per task (transpose, double forward/backward)
constexpr int64_t kPairChunk = 128;     // pairs per outer-product pass of the weight gradient
constexpr int64_t kWeightBlock = 2048;  // output rows per weight-gradient task

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
  // A corrupt table (neighbour out of range) is reported; a pair seen twice is found by counting.
  const int64_t tasks = (M + kRowBlock - 1) / kRowBlock, ttasks = (N + kRowBlock - 1) / kRowBlock;
  std::vector<int64_t> pairs(static_cast<size_t>(tasks), 0), tpairs(static_cast<size_t>(ttasks), 0);
  executor.for_each(tasks, [&](int64_t task) {
    const int64_t r0 = task * kRowBlock, r1 = std::min(M, r0 + kRowBlock);
    int64_t count = 0;
    for (int64_t o = r0; o < r1; ++o) {
      for (int64_t k = 0; k < K; ++k) {
        const int32_t i = rb.neighbors[o * K + k];
        if (i < -1 || i >= N) {
          std::ostringstream msg;
          msg << "transpose_rulebook: neighbors[" << o << ", " << k << "] = " << i << " is outside [-1, " << N << ")";
          throw std::invalid_argument(msg.str());
        }
        if (i >= 0) transposed[static_cast<int64_t>(i) * K + k] = static_cast<int32_t>(o), ++count;
      }
    }
    pairs[task] = count;
  });
  executor.for_each(ttasks, [&](int64_t task) {
    const int64_t r0 = task * kRowBlock * K, r1 = std::min(N, (task + 1) * kRowBlock) * K;
    int64_t count = 0;
    for (int64_t j = r0; j < r1; ++j) count += transposed[j] >= 0;
    tpairs[task] = count;
  });
  int64_t a = 0, b = 0;
  for (int64_t c : pairs) a += c;
  for (int64_t c : tpairs) b += c;
  if (a != b) throw std::invalid_argument("transpose_rulebook: an input meets two outputs through the same kernel offset");
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
  const int64_t blocks = (M + kWeightBlock - 1) / kWeightBlock;
  const int64_t per_k = cin * cout, wsize = K * per_k;
  std::vector<float> partial(static_cast<size_t>(blocks * wsize), 0.0f);  // per block: [k][ci][co]
  executor.for_each(blocks, [&](int64_t b) {
    thread_local std::vector<const float*> f_rows, g_rows;
    f_rows.resize(static_cast<size_t>(kWeightBlock));
    g_rows.resize(static_cast<size_t>(kWeightBlock));
    const int64_t r0 = b * kWeightBlock, r1 = std::min(M, r0 + kWeightBlock);
    float* t = partial.data() + b * wsize;
    for (int64_t k = 0; k < K; ++k) {
      int64_t n = 0;  // the block's pairs of offset k, in output order (branch-free gather)
      for (int64_t r = r0; r < r1; ++r) {
        const int32_t i = rb.neighbors[r * K + k];
        f_rows[n] = features + static_cast<int64_t>(i < 0 ? 0 : i) * cin;
        g_rows[n] = grad_out + r * cout;
        n += i >= 0;
      }
      // chunks whose rows stay in cache while every (ci, co) tile passes over them; T is loaded and
      // stored around each chunk, so each element's chain over the pairs is unchanged
      for (int64_t p0 = 0; p0 < n; p0 += kPairChunk)
        kern.outer_accumulate(f_rows.data() + p0, g_rows.data() + p0, std::min(kPairChunk, n - p0), cin, cout,
                              t + k * per_k);
    }
  });
  // fixed-order sum of the blocks' partial gradients (block size is a constant: thread-independent)
  executor.for_each(K, [&](int64_t k) {
    for (int64_t c = 0; c < cin; ++c) {
      for (int64_t co = 0; co < cout; ++co) {
        float sum = 0.0f;
        for (int64_t b = 0; b < blocks; ++b) sum += partial[b * wsize + k * per_k + c * cout + co];
        grad_weight[(co * K + k) * cin + c] = sum;
      }
    }
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
