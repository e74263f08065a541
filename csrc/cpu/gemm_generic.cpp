// Portable SGEMM micro-kernel, 4 rows x 8 columns, written with GCC/Clang vector extensions (4-wide
// float vectors: SSE2 on baseline x86-64, NEON on arm64); used where AVX2 is not available.
// Accumulators are named variables (not an array) so that the compiler keeps them in registers.
#include <cstring>

#include "gemm_kernels.h"

namespace clean_deploy {
namespace detail {

namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

typedef float v4f __attribute__((vector_size(16)));

inline v4f load(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, v4f v) { std::memcpy(p, &v, sizeof v); }

// One 4 x 8 tile; `cols` < 8 loads/stores only the first cols columns (through a small buffer).
inline void tile(const float* const* a, float* const* c, const float* w, int64_t cin, int64_t col, int64_t cols) {
  float* c0 = c[0] + col;
  float* c1 = c[1] + col;
  float* c2 = c[2] + col;
  float* c3 = c[3] + col;
  float buf[kMR][kNR] = {};
  if (cols < kNR) {
    for (int64_t j = 0; j < cols; ++j) buf[0][j] = c0[j], buf[1][j] = c1[j], buf[2][j] = c2[j], buf[3][j] = c3[j];
    c0 = buf[0], c1 = buf[1], c2 = buf[2], c3 = buf[3];
  }
  v4f x00 = load(c0), x01 = load(c0 + 4), x10 = load(c1), x11 = load(c1 + 4);
  v4f x20 = load(c2), x21 = load(c2 + 4), x30 = load(c3), x31 = load(c3 + 4);
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
  for (int64_t k = 0; k < cin; ++k) {
    const v4f b0 = load(w + k * kNR), b1 = load(w + k * kNR + 4);
    const float s0 = a0[k], s1 = a1[k], s2 = a2[k], s3 = a3[k];
    x00 += s0 * b0, x01 += s0 * b1;
    x10 += s1 * b0, x11 += s1 * b1;
    x20 += s2 * b0, x21 += s2 * b1;
    x30 += s3 * b0, x31 += s3 * b1;
  }
  store(c0, x00), store(c0 + 4, x01), store(c1, x10), store(c1 + 4, x11);
  store(c2, x20), store(c2 + 4, x21), store(c3, x30), store(c3 + 4, x31);
  if (cols < kNR) {
    float* d[kMR] = {c[0] + col, c[1] + col, c[2] + col, c[3] + col};
    for (int i = 0; i < kMR; ++i)
      for (int64_t j = 0; j < cols; ++j) d[i][j] = buf[i][j];
  }
}

void accumulate(const float* const* a_rows, float* const* c_rows, int64_t n, const float* w, int64_t cin,
                int64_t cout) {
  for (int64_t g = 0; g < n; g += kMR)
    for (int64_t col = 0; col < cout; col += kNR)
      tile(a_rows + g, c_rows + g, w + col * cin, cin, col, cout - col < kNR ? cout - col : kNR);
}

// Outer-product accumulation, plain loops: each T element is a multiply-add chain over p in order
// (the compiler vectorises the co loop; every lane is an independent element).
void outer_accumulate(const float* const* f_rows, const float* const* g_rows, int64_t n, int64_t cin, int64_t cout,
                      float* t) {
  for (int64_t p = 0; p < n; ++p) {
    const float* f = f_rows[p];
    const float* g = g_rows[p];
    for (int64_t ci = 0; ci < cin; ++ci) {
      const float a = f[ci];
      float* tr = t + ci * cout;
      for (int64_t co = 0; co < cout; ++co) tr[co] += a * g[co];
    }
  }
}

}  // namespace

const GemmKernel& gemm_kernel_generic() {
  static const GemmKernel kernel{"generic", kMR, kNR, &accumulate, &outer_accumulate};
  return kernel;
}

}  // namespace detail
}  // namespace clean_deploy
