// AVX2 + FMA SGEMM micro-kernel: 6 rows x 16 columns (12 ymm accumulators), masked loads/stores for
// the last, partial panel. Compiled with -mavx2 -mfma; called only on CPUs that have both.
// Accumulators are named variables (not an array) so that the compiler keeps them in registers.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace clean_deploy {
namespace detail {

namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;

// NV (1 or 2) vectors of 8 columns per row; MASKED: only the lanes set in m0/m1 are loaded/stored.
template <int NV, bool MASKED>
inline void tile(const float* const* a, float* const* c, const float* w, int64_t cin, int64_t col, __m256i m0,
                 __m256i m1) {
  auto ld = [&](const float* p, __m256i m) { return MASKED ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p); };
  auto st = [&](float* p, __m256i m, __m256 v) {
    if (MASKED)
      _mm256_maskstore_ps(p, m, v);
    else
      _mm256_storeu_ps(p, v);
  };
  float *c0 = c[0] + col, *c1 = c[1] + col, *c2 = c[2] + col, *c3 = c[3] + col, *c4 = c[4] + col, *c5 = c[5] + col;
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  const __m256 z = _mm256_setzero_ps();
  __m256 x00 = ld(c0, m0), x10 = ld(c1, m0), x20 = ld(c2, m0), x30 = ld(c3, m0), x40 = ld(c4, m0), x50 = ld(c5, m0);
  __m256 x01 = z, x11 = z, x21 = z, x31 = z, x41 = z, x51 = z;
  if (NV == 2) {
    x01 = ld(c0 + 8, m1), x11 = ld(c1 + 8, m1), x21 = ld(c2 + 8, m1);
    x31 = ld(c3 + 8, m1), x41 = ld(c4 + 8, m1), x51 = ld(c5 + 8, m1);
  }
  for (int64_t k = 0; k < cin; ++k) {
    const __m256 b0 = _mm256_loadu_ps(w + k * kNR);
    const __m256 b1 = NV == 2 ? _mm256_loadu_ps(w + k * kNR + 8) : z;
    __m256 t;
#define CD_ROW(i)                                      \
  t = _mm256_broadcast_ss(a##i + k);                   \
  x##i##0 = _mm256_fmadd_ps(t, b0, x##i##0);           \
  if (NV == 2) x##i##1 = _mm256_fmadd_ps(t, b1, x##i##1);
    CD_ROW(0) CD_ROW(1) CD_ROW(2) CD_ROW(3) CD_ROW(4) CD_ROW(5)
#undef CD_ROW
  }
  st(c0, m0, x00), st(c1, m0, x10), st(c2, m0, x20), st(c3, m0, x30), st(c4, m0, x40), st(c5, m0, x50);
  if (NV == 2) {
    st(c0 + 8, m1, x01), st(c1 + 8, m1, x11), st(c2 + 8, m1, x21);
    st(c3 + 8, m1, x31), st(c4 + 8, m1, x41), st(c5 + 8, m1, x51);
  }
}

inline __m256i lane_mask(int64_t cols) {  // lanes < cols set
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols)), lane);
}

void accumulate(const float* const* a_rows, float* const* c_rows, int64_t n, const float* w, int64_t cin,
                int64_t cout) {
  const int64_t full = cout / kNR * kNR;
  const int64_t rest = cout - full;
  const __m256i m0 = lane_mask(rest), m1 = lane_mask(rest - 8);
  const __m256i none = _mm256_setzero_si256();
  for (int64_t g = 0; g < n; g += kMR) {
    const float* const* a = a_rows + g;
    float* const* c = c_rows + g;
    for (int64_t col = 0; col < full; col += kNR) tile<2, false>(a, c, w + col * cin, cin, col, none, none);
    if (rest == 8)
      tile<1, false>(a, c, w + full * cin, cin, full, none, none);
    else if (rest > 8)
      tile<2, true>(a, c, w + full * cin, cin, full, m0, m1);
    else if (rest > 0)
      tile<1, true>(a, c, w + full * cin, cin, full, m0, none);
  }
}

}  // namespace

const GemmKernel& gemm_kernel_avx2() {
  static const GemmKernel kernel{"avx2", kMR, kNR, &accumulate};
  return kernel;
}

}  // namespace detail
}  // namespace clean_deploy
