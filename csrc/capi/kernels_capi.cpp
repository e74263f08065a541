// libclean_deploy_kernels.so: a plain C interface to the CPU kernels (rulebooks, sparse conv forward
// and backward) for the PyTorch training path (clean_deploy/native/, through ctypes). It links
// neither torch nor ONNX Runtime, so one build serves any torch version and ships in the wheel.
//
// Threads: every call takes the number of threads to use and runs on an OpenMP team (see
// OmpExecutor). The kernels are deterministic: the results do not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <memory>
#include <vector>

#include "clean_deploy/sparse_conv.h"

#define CD_API extern "C" __attribute__((visibility("default")))

namespace {

void set_error(char* err, size_t err_len, const char* what) {
  if (!err || err_len == 0) return;
  std::strncpy(err, what, err_len - 1);
  err[err_len - 1] = '\0';
}

// Runs the tasks on an OpenMP team (tasks handed out dynamically through an atomic counter; only
// `omp parallel` is used, so any libgomp since GCC 4.9 serves). Loaded into a process that already
// has torch, the library binds to torch's own libgomp (same soname), so the kernels run on torch's
// intra-op threads: with a second pool, torch's idle OpenMP threads spin-wait on the same cores
// while our threads work (measured: the 3D backbone's forward + backward 20-40% slower).
class OmpExecutor final : public clean_deploy::Executor {
 public:
  explicit OmpExecutor(int threads) : threads_(threads < 1 ? 1 : threads) {}
  void run(int64_t n, TaskFn fn, void* ctx) const override {
    if (n <= 0) return;
    const int team = static_cast<int>(std::min<int64_t>(threads_, n));
    if (team <= 1) {
      for (int64_t t = 0; t < n; ++t) fn(ctx, t);
      return;
    }
    std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(team)
    {
      for (int64_t t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(ctx, t);
    }
  }
  int concurrency() const override { return threads_; }

 private:
  int threads_;
};

template <class F>
int guarded(char* err, size_t err_len, int threads, F&& f) {
  try {
    const OmpExecutor executor(threads);
    f(static_cast<const clean_deploy::Executor&>(executor));
    return 0;
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
  } catch (...) {
    set_error(err, err_len, "unknown error");
  }
  return -1;
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
    clean_deploy::build_rulebook(indices, n, clean_deploy::ConvGeometry::from_flat(geometry, subm != 0), ex, *rb, scratch);
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
// weight: cout x K x cin; bias: cout values or null. Precondition (not checked here: the tables come
// from cd_rulebook_build / cd_rulebook_transpose, which validate): -1 <= neighbors < num_in.
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
// deterministic. NaN inputs do not propagate (x > max is false for NaN), unlike torch's amax.
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

// Voxel-query RoI grid pooling of a frozen (eval-mode) pool in one pass, without the (candidates x
// C) intermediates (clean_deploy.models.roi.grid_pool.VoxelQueryPool with BatchNorm folded into
// scale/shift). For grid point p (frame point_batch[p]) in voxel cell floor((points[p] - pc_min) /
// voxel_size) and each offset (dz, dy, dx) of `offsets` (Q x 3), the voxel v = volume[b, z, y, x]
// (-1: empty; cells outside the grid are skipped) contributes
//   e[c] = scale[c] * (proj[v, c] + sum_j wpos[c, j] * rel_j) + shift[c],
//   rel = (coords[v] (x, y, z) + 0.5) * voxel_size + pc_min - points[p],
// and out[p, c] = max(0, max_v e[c]). proj: V x C; coords: V x 4 int32 (b, z, y, x), not read (the
// voxel found at a cell of `volume`, which is built from these coords, has that cell's coordinates;
// the argument stays for the ABI); volume: dims[0..3] = (B, D, H, W) int64; wpos: C x 3.
//
// Computed as e = P[v] + O[k] + R[p]: the voxel found at offset k of p's cell sits at
// rel = offset_k * voxel_size + (centre of p's cell - points[p]), so with
//   P[v, c] = scale[c] * proj[v, c] + shift[c]                      (once per voxel),
//   O[k, c] = scale[c] * sum_j wpos[c, j] * offset_k,j * voxel_size_j (once per offset),
//   R[p, c] = scale[c] * sum_j wpos[c, j] * (cell centre - point)_j   (once per grid point),
// out[p, c] = max(0, max_k (P[v_k, c] + O[k, c]) + R[p, c]): one add and one max per found voxel
// and channel. Every term is small (an offset of at most the query range, a point within half a
// voxel of its cell centre), so the regrouping costs no precision (float rounding, ~1e-7 relative).
CD_API int cd_voxel_query_pool_eval(const float* proj, const int32_t* coords, int64_t num_voxels, const float* points,
                                    const int64_t* point_batch, int64_t num_points, const int64_t* volume,
                                    const int64_t* dims, const int64_t* offsets, int64_t q, int64_t c,
                                    const float* wpos, const float* scale, const float* shift,
                                    const float* voxel_size, const float* pc_min, float* out, int threads, char* err,
                                    size_t err_len) {
  (void)coords;  // the voxel found at a cell has that cell's coordinates: rel follows from the offset
  return guarded(err, err_len, threads, [&](const clean_deploy::Executor& ex) {
    const int64_t B = dims[0], D = dims[1], H = dims[2], W = dims[3];
    const size_t C = static_cast<size_t>(c);
    std::vector<float> sw(3 * C);  // scale[c] * wpos[c, j], as 3 x C (unit stride along the channels)
    for (size_t j = 0; j < C; ++j)
      for (size_t i = 0; i < 3; ++i) sw[i * C + j] = scale[j] * wpos[j * 3 + i];
    std::vector<float> off(static_cast<size_t>(q) * C);
    for (int64_t k = 0; k < q; ++k) {
      const float d0 = static_cast<float>(offsets[3 * k + 2]) * voxel_size[0];
      const float d1 = static_cast<float>(offsets[3 * k + 1]) * voxel_size[1];
      const float d2 = static_cast<float>(offsets[3 * k]) * voxel_size[2];
      for (size_t j = 0; j < C; ++j) off[k * C + j] = sw[j] * d0 + sw[C + j] * d1 + sw[2 * C + j] * d2;
    }
    std::vector<float> pv(static_cast<size_t>(num_voxels) * C);
    constexpr int64_t kVoxBlock = 4096;
    ex.for_each((num_voxels + kVoxBlock - 1) / kVoxBlock, [&](int64_t task) {
      const int64_t v1 = std::min(num_voxels, (task + 1) * kVoxBlock);
      for (int64_t v = task * kVoxBlock; v < v1; ++v) {
        const float* __restrict f = proj + v * c;
        float* __restrict o = pv.data() + v * c;
        for (int64_t j = 0; j < c; ++j) o[j] = scale[j] * f[j] + shift[j];
      }
    });
    constexpr int64_t kBlock = 256;
    ex.for_each((num_points + kBlock - 1) / kBlock, [&](int64_t task) {
      const int64_t p0 = task * kBlock, p1 = std::min(num_points, p0 + kBlock);
      std::vector<float> m(C);
      for (int64_t p = p0; p < p1; ++p) {
        const float* pt = points + p * 3;
        const int64_t b = point_batch[p];
        if (b < 0 || b >= B) throw std::invalid_argument("grid point batch index out of range");
        const float fx = std::floor((pt[0] - pc_min[0]) / voxel_size[0]);
        const float fy = std::floor((pt[1] - pc_min[1]) / voxel_size[1]);
        const float fz = std::floor((pt[2] - pc_min[2]) / voxel_size[2]);
        const int64_t cx = static_cast<int64_t>(fx), cy = static_cast<int64_t>(fy), cz = static_cast<int64_t>(fz);
        float* __restrict mm = m.data();
        for (size_t j = 0; j < C; ++j) mm[j] = -INFINITY;
        for (int64_t k = 0; k < q; ++k) {
          const int64_t z = cz + offsets[3 * k], y = cy + offsets[3 * k + 1], x = cx + offsets[3 * k + 2];
          if (z < 0 || z >= D || y < 0 || y >= H || x < 0 || x >= W) continue;
          const int64_t v = volume[((b * D + z) * H + y) * W + x];
          if (v < 0) continue;
          if (v >= num_voxels) throw std::invalid_argument("voxel index out of range");
          const float* __restrict a = pv.data() + v * c;
          const float* __restrict ok = off.data() + k * c;
          for (int64_t j = 0; j < c; ++j) {
            const float t = a[j] + ok[j];
            mm[j] = t > mm[j] ? t : mm[j];
          }
        }
        const float d0 = (fx + 0.5f) * voxel_size[0] + pc_min[0] - pt[0];
        const float d1 = (fy + 0.5f) * voxel_size[1] + pc_min[1] - pt[1];
        const float d2 = (fz + 0.5f) * voxel_size[2] + pc_min[2] - pt[2];
        float* __restrict o = out + p * c;
        for (size_t j = 0; j < C; ++j) {
          const float e = mm[j] + (sw[j] * d0 + sw[C + j] * d1 + sw[2 * C + j] * d2);
          o[j] = e > 0.0f ? e : 0.0f;  // no voxel found: -inf -> 0
        }
      }
    });
  });
}
