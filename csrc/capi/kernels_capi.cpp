// libclean_deploy_kernels.so: a plain C interface to the CPU kernels (rulebooks, sparse conv forward
// and backward) for the PyTorch training path (clean_deploy/native/, through ctypes). It links
// neither torch nor ONNX Runtime, so one build serves any torch version and ships in the wheel.
//
// Threads: every call takes the number of threads to use; the library keeps one pool per process
// (rebuilt after a fork, resized when the count changes) and serialises calls that need it. The
// kernels are deterministic: the results do not depend on the thread count.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <memory>
#include <mutex>

#include "clean_deploy/sparse_conv.h"

#define CD_API extern "C" __attribute__((visibility("default")))

namespace {

void set_error(char* err, size_t err_len, const char* what) {
  if (!err || err_len == 0) return;
  std::strncpy(err, what, err_len - 1);
  err[err_len - 1] = '\0';
}

// The pool of this process, sized `threads` (held with its lock for the length of one call).
struct PoolHolder {
  std::mutex mu;
  std::unique_ptr<clean_deploy::ThreadPoolExecutor> pool;
  int threads = 0;
  pid_t pid = 0;
};

PoolHolder& holder() {
  static PoolHolder* h = new PoolHolder;  // never destroyed: worker threads may outlive static teardown
  return *h;
}

template <class F>
int guarded(char* err, size_t err_len, int threads, F&& f) {
  try {
    if (threads <= 1) {
      const clean_deploy::SerialExecutor serial;
      f(static_cast<const clean_deploy::Executor&>(serial));
      return 0;
    }
    PoolHolder& h = holder();
    std::lock_guard<std::mutex> lock(h.mu);
    const pid_t pid = getpid();
    if (h.pid != pid) {
      // a forked child inherits the pool object but not its threads: abandon it (never join)
      h.pool.release();
      h.threads = 0;
      h.pid = pid;
    }
    if (h.threads != threads) {
      h.pool.reset(new clean_deploy::ThreadPoolExecutor(threads));
      h.threads = threads;
    }
    f(static_cast<const clean_deploy::Executor&>(*h.pool));
    return 0;
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
  } catch (...) {
    set_error(err, err_len, "unknown error");
  }
  return -1;
}

clean_deploy::ConvGeometry geometry_from(const int64_t* g15, int subm) {
  clean_deploy::ConvGeometry g;
  for (int a = 0; a < 3; ++a) {
    g.kernel[a] = g15[a];
    g.stride[a] = g15[3 + a];
    g.padding[a] = g15[6 + a];
    g.dilation[a] = g15[9 + a];
    g.in_shape[a] = g15[12 + a];
  }
  g.subm = subm != 0;
  return g;
}

}  // namespace

// "avx512", "avx2" or "generic": the SGEMM micro-kernel of this CPU.
CD_API const char* cd_gemm_isa() { return clean_deploy::gemm_isa_name(); }

// Builds the rulebook of a conv over `indices` (n x 4 int32, (b, z, y, x)). geometry: 15 int64 =
// kernel[3], stride[3], padding[3], dilation[3], in_shape[3] (z, y, x). On success *handle owns the
// rulebook and *num_out is its number of output sites; copy it out with cd_rulebook_take.
CD_API int cd_rulebook_build(const int32_t* indices, int64_t n, const int64_t* geometry, int subm, int threads,
                             void** handle, int64_t* num_out, char* err, size_t err_len) {
  *handle = nullptr;
  return guarded(err, err_len, threads, [&](const clean_deploy::Executor& ex) {
    std::unique_ptr<clean_deploy::Rulebook> rb(new clean_deploy::Rulebook);
    clean_deploy::RulebookScratch scratch;
    clean_deploy::build_rulebook(indices, n, geometry_from(geometry, subm), ex, *rb, scratch);
    *num_out = rb->num_out;
    *handle = rb.release();
  });
}

// Copies the rulebook's output sites (num_out x 4; skipped when out_indices is null, e.g. for a
// submanifold conv whose outputs are its inputs) and neighbour table (num_out x K) and frees it.
CD_API void cd_rulebook_take(void* handle, int32_t* out_indices, int32_t* neighbors) {
  std::unique_ptr<clean_deploy::Rulebook> rb(static_cast<clean_deploy::Rulebook*>(handle));
  if (!rb) return;
  if (out_indices && !rb->out_indices.empty()) std::memcpy(out_indices, rb->out_indices.data(), rb->out_indices.size() * sizeof(int32_t));
  if (!rb->neighbors.empty()) std::memcpy(neighbors, rb->neighbors.data(), rb->neighbors.size() * sizeof(int32_t));
}

CD_API void cd_rulebook_free(void* handle) { delete static_cast<clean_deploy::Rulebook*>(handle); }

// transposed (num_in x K) of a neighbour table (num_out x K); see transpose_rulebook.
CD_API int cd_rulebook_transpose(const int32_t* neighbors, int64_t num_out, int64_t kernel_volume, int64_t num_in,
                                 int32_t* transposed, int threads, char* err, size_t err_len) {
  return guarded(err, err_len, threads, [&](const clean_deploy::Executor& ex) {
    clean_deploy::transpose_rulebook({num_in, num_out, kernel_volume, neighbors}, transposed, ex);
  });
}

// out (num_out x cout) = bias + sum_k W_k . features[neighbors[:, k]]. dtype 0: float32, 1: float64.
// weight: cout x K x cin; bias: cout values or null.
CD_API int cd_sparse_conv_forward(int dtype, const void* features, int64_t num_in, int64_t cin, const void* weight,
                                  int64_t cout, const void* bias, const int32_t* neighbors, int64_t num_out,
                                  int64_t kernel_volume, void* out, int threads, char* err, size_t err_len) {
  return guarded(err, err_len, threads, [&](const clean_deploy::Executor& ex) {
    const clean_deploy::RulebookView rb(num_in, num_out, kernel_volume, neighbors);
    if (dtype == 0) {
      clean_deploy::PackedWeights packed;
      clean_deploy::pack_weights(static_cast<const float*>(weight), cout, kernel_volume, cin, packed);
      clean_deploy::sparse_conv_forward(static_cast<const float*>(features), packed, static_cast<const float*>(bias), rb,
                                        clean_deploy::Activation::kNone, static_cast<float*>(out), ex);
    } else if (dtype == 1) {
      clean_deploy::sparse_conv_forward(static_cast<const double*>(features), cin, static_cast<const double*>(weight),
                                        cout, static_cast<const double*>(bias), rb, static_cast<double*>(out), ex);
    } else {
      throw std::invalid_argument("dtype must be 0 (float32) or 1 (float64)");
    }
  });
}

// Gradients of cd_sparse_conv_forward given grad_out (num_out x cout); each output pointer may be
// null (not computed). transposed: cd_rulebook_transpose of neighbors (needed for grad_features).
CD_API int cd_sparse_conv_backward(int dtype, const void* features, int64_t num_in, int64_t cin, const void* weight,
                                   int64_t cout, const int32_t* neighbors, const int32_t* transposed, int64_t num_out,
                                   int64_t kernel_volume, const void* grad_out, void* grad_features, void* grad_weight,
                                   void* grad_bias, int threads, char* err, size_t err_len) {
  return guarded(err, err_len, threads, [&](const clean_deploy::Executor& ex) {
    if (dtype != 0 && dtype != 1) throw std::invalid_argument("dtype must be 0 (float32) or 1 (float64)");
    const clean_deploy::RulebookView rb(num_in, num_out, kernel_volume, neighbors);
    const clean_deploy::RulebookView rbt(num_out, num_in, kernel_volume, transposed);
    if (grad_features && !transposed) throw std::invalid_argument("the input gradient needs the transposed rulebook");
    if (dtype == 0) {
      if (grad_features)
        clean_deploy::sparse_conv_backward_input(static_cast<const float*>(grad_out), static_cast<const float*>(weight),
                                                 cout, cin, rbt, static_cast<float*>(grad_features), ex);
      if (grad_weight)
        clean_deploy::sparse_conv_backward_weight(static_cast<const float*>(features), cin,
                                                  static_cast<const float*>(grad_out), cout, rb,
                                                  static_cast<float*>(grad_weight), ex);
      if (grad_bias) clean_deploy::sum_rows(static_cast<const float*>(grad_out), num_out, cout, static_cast<float*>(grad_bias));
    } else {
      if (grad_features)
        clean_deploy::sparse_conv_backward_input(static_cast<const double*>(grad_out),
                                                 static_cast<const double*>(weight), cout, cin, rbt,
                                                 static_cast<double*>(grad_features), ex);
      if (grad_weight)
        clean_deploy::sparse_conv_backward_weight(static_cast<const double*>(features), cin,
                                                  static_cast<const double*>(grad_out), cout, rb,
                                                  static_cast<double*>(grad_weight), ex);
      if (grad_bias)
        clean_deploy::sum_rows(static_cast<const double*>(grad_out), num_out, cout, static_cast<double*>(grad_bias));
    }
  });
}

// Segment max with its argmax (RoI grid pooling): rows [offsets[p], offsets[p+1]) of src (rows x c,
// float32, row-major) belong to segment p; out[p, j] = max(0, max of those rows' column j) and
// arg[p, j] = the first row attaining it when that max is > 0, else -1. Parallel over segments;
// deterministic.
CD_API int cd_segment_max(const float* src, int64_t rows, int64_t c, const int64_t* offsets, int64_t segments,
                          float* out, int64_t* arg, int threads, char* err, size_t err_len) {
  return guarded(err, err_len, threads, [&](const clean_deploy::Executor& ex) {
    if (segments > 0 && (offsets[0] != 0 || offsets[segments] != rows))
      throw std::invalid_argument("segment offsets must start at 0 and end at the number of rows");
    constexpr int64_t kSegBlock = 1024;
    ex.for_each((segments + kSegBlock - 1) / kSegBlock, [&](int64_t task) {
      const int64_t p0 = task * kSegBlock, p1 = std::min(segments, p0 + kSegBlock);
      for (int64_t p = p0; p < p1; ++p) {
        float* o = out + p * c;
        int64_t* a = arg + p * c;
        for (int64_t j = 0; j < c; ++j) o[j] = 0.0f, a[j] = -1;
        const int64_t r0 = offsets[p], r1 = offsets[p + 1];
        if (r0 > r1 || r1 > rows) throw std::invalid_argument("segment offsets must be non-decreasing");
        for (int64_t r = r0; r < r1; ++r) {
          const float* x = src + r * c;
          for (int64_t j = 0; j < c; ++j) {
            if (x[j] > o[j]) o[j] = x[j], a[j] = r;
          }
        }
      }
    });
  });
}
