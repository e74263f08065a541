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

// Outer-product accumulation: R rows of T (ci) x NV vectors of 8 columns (co) in registers for
// the whole pass over the n pairs.
template <int R, int NV, bool MASKED>
inline void outer_tile(const float* const* f, const float* const* g, int64_t n, int64_t ci0, int64_t co0, float* t,
                       int64_t ldt, __m256i m0, __m256i m1) {
  auto ld = [&](const float* p, __m256i m) { return MASKED ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p); };
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    acc0[r] = ld(t + (ci0 + r) * ldt + co0, m0);
    acc1[r] = NV == 2 ? ld(t + (ci0 + r) * ldt + co0 + 8, m1) : _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < n; ++p) {
    const float* fp = f[p] + ci0;
    const float* gp = g[p] + co0;
    const __m256 b0 = ld(gp, m0);
    const __m256 b1 = NV == 2 ? ld(gp + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(fp + r);
      acc0[r] = _mm256_fmadd_ps(a, b0, acc0[r]);
      if (NV == 2) acc1[r] = _mm256_fmadd_ps(a, b1, acc1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* d = t + (ci0 + r) * ldt + co0;
    if (MASKED) {
      _mm256_maskstore_ps(d, m0, acc0[r]);
      if (NV == 2) _mm256_maskstore_ps(d + 8, m1, acc1[r]);
    } else {
      _mm256_storeu_ps(d, acc0[r]);
      if (NV == 2) _mm256_storeu_ps(d + 8, acc1[r]);
    }
  }
}

template <int NV, bool MASKED>
void outer_rows(const float* const* f, const float* const* g, int64_t n, int64_t cin, int64_t co0, float* t,
                int64_t ldt, __m256i m0, __m256i m1) {
  constexpr int kR = 6;  // 12 accumulators + 2 columns + 1 broadcast of the 16 ymm registers
  int64_t ci = 0;
  for (; ci + kR <= cin; ci += kR) outer_tile<kR, NV, MASKED>(f, g, n, ci, co0, t, ldt, m0, m1);
  for (; ci + 2 <= cin; ci += 2) outer_tile<2, NV, MASKED>(f, g, n, ci, co0, t, ldt, m0, m1);
  for (; ci < cin; ++ci) outer_tile<1, NV, MASKED>(f, g, n, ci, co0, t, ldt, m0, m1);
}

void outer_accumulate(const float* const* f_rows, const float* const* g_rows, int64_t n, int64_t cin, int64_t cout,
                      float* t) {
  const __m256i none = _mm256_setzero_si256();
  for (int64_t co = 0; co < cout; co += 16) {
    const int64_t cols = cout - co < 16 ? cout - co : 16;
    if (cols == 16)
      outer_rows<2, false>(f_rows, g_rows, n, cin, co, t, cout, none, none);
    else if (cols == 8)
      outer_rows<1, false>(f_rows, g_rows, n, cin, co, t, cout, none, none);
    else if (cols > 8)
      outer_rows<2, true>(f_rows, g_rows, n, cin, co, t, cout, lane_mask(8), lane_mask(cols - 8));
    else
      outer_rows<1, true>(f_rows, g_rows, n, cin, co, t, cout, lane_mask(cols), none);
  }
}

}  // namespace

const GemmKernel& gemm_kernel_avx2() {
  static const GemmKernel kernel{"avx2", kMR, kNR, &accumulate, &outer_accumulate};
  return kernel;
}

}  // namespace detail
}  // namespace clean_deploy
