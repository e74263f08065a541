// AVX-512F SGEMM micro-kernel: 12 rows x 32 columns (24 zmm accumulators), mask registers for the
// last, partial panel. Compiled with -mavx512f; called only on CPUs (and OSes) that support it.
// Accumulators are named variables (not an array) so that the compiler keeps them in registers.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace clean_deploy {
namespace detail {

namespace {

constexpr int kMR = 12;
constexpr int kNR = 32;

#define CD_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

// NV (1 or 2) vectors of 16 columns per row; lanes outside m0/m1 are neither loaded nor stored.
template <int NV>
inline void tile(const float* const* a, float* const* c, const float* w, int64_t cin, int64_t col, __mmask16 m0,
                 __mmask16 m1) {
  const __m512 z = _mm512_setzero_ps();
#define CD_INIT(i)                                                          \
  float* c##i = c[i] + col;                                                 \
  const float* a##i = a[i];                                                 \
  __m512 x##i##_0 = _mm512_maskz_loadu_ps(m0, c##i);                        \
  __m512 x##i##_1 = NV == 2 ? _mm512_maskz_loadu_ps(m1, c##i + 16) : z;
  CD_ROWS(CD_INIT)
#undef CD_INIT
  for (int64_t k = 0; k < cin; ++k) {
    const __m512 b0 = _mm512_loadu_ps(w + k * kNR);
    const __m512 b1 = NV == 2 ? _mm512_loadu_ps(w + k * kNR + 16) : z;
    __m512 t;
#define CD_ROW(i)                                         \
  t = _mm512_set1_ps(a##i[k]);                            \
  x##i##_0 = _mm512_fmadd_ps(t, b0, x##i##_0);            \
  if (NV == 2) x##i##_1 = _mm512_fmadd_ps(t, b1, x##i##_1);
    CD_ROWS(CD_ROW)
#undef CD_ROW
  }
#define CD_STORE(i)                                       \
  _mm512_mask_storeu_ps(c##i, m0, x##i##_0);              \
  if (NV == 2) _mm512_mask_storeu_ps(c##i + 16, m1, x##i##_1);
  CD_ROWS(CD_STORE)
#undef CD_STORE
}

#undef CD_ROWS

inline __mmask16 lane_mask(int64_t cols) {
  return cols >= 16 ? static_cast<__mmask16>(0xFFFF) : cols <= 0 ? 0 : static_cast<__mmask16>((1u << cols) - 1);
}

void accumulate(const float* const* a_rows, float* const* c_rows, int64_t n, const float* w, int64_t cin,
                int64_t cout) {
  const int64_t full = cout / kNR * kNR;
  const int64_t rest = cout - full;
  const __mmask16 all = 0xFFFF;
  for (int64_t g = 0; g < n; g += kMR) {
    const float* const* a = a_rows + g;
    float* const* c = c_rows + g;
    for (int64_t col = 0; col < full; col += kNR) tile<2>(a, c, w + col * cin, cin, col, all, all);
    if (rest > 16)
      tile<2>(a, c, w + full * cin, cin, full, all, lane_mask(rest - 16));
    else if (rest > 0)
      tile<1>(a, c, w + full * cin, cin, full, lane_mask(rest), 0);
  }
}

// Outer-product accumulation: R rows of T (ci) x NV vectors of 16 columns (co) held in registers
// for the whole pass over the n pairs.
template <int R, int NV>
inline void outer_tile(const float* const* f, const float* const* g, int64_t n, int64_t ci0, int64_t co0, float* t,
                       int64_t ldt, __mmask16 m0, __mmask16 m1) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm512_maskz_loadu_ps(m0, t + (ci0 + r) * ldt + co0);
    acc1[r] = NV == 2 ? _mm512_maskz_loadu_ps(m1, t + (ci0 + r) * ldt + co0 + 16) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < n; ++p) {
    const float* fp = f[p] + ci0;
    const float* gp = g[p] + co0;
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, gp);
    const __m512 b1 = NV == 2 ? _mm512_maskz_loadu_ps(m1, gp + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(fp[r]);
      acc0[r] = _mm512_fmadd_ps(a, b0, acc0[r]);
      if (NV == 2) acc1[r] = _mm512_fmadd_ps(a, b1, acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(t + (ci0 + r) * ldt + co0, m0, acc0[r]);
    if (NV == 2) _mm512_mask_storeu_ps(t + (ci0 + r) * ldt + co0 + 16, m1, acc1[r]);
  }
}

template <int NV>
void outer_rows(const float* const* f, const float* const* g, int64_t n, int64_t cin, int64_t co0, float* t,
                int64_t ldt, __mmask16 m0, __mmask16 m1) {
  constexpr int kR = 12;  // 24 accumulators + 2 columns + 1 broadcast of the 32 zmm registers
  int64_t ci = 0;
  for (; ci + kR <= cin; ci += kR) outer_tile<kR, NV>(f, g, n, ci, co0, t, ldt, m0, m1);
  for (; ci + 4 <= cin; ci += 4) outer_tile<4, NV>(f, g, n, ci, co0, t, ldt, m0, m1);
  for (; ci < cin; ++ci) outer_tile<1, NV>(f, g, n, ci, co0, t, ldt, m0, m1);
}

void outer_accumulate(const float* const* f_rows, const float* const* g_rows, int64_t n, int64_t cin, int64_t cout,
                      float* t) {
  for (int64_t co = 0; co < cout; co += 32) {
    const int64_t cols = cout - co < 32 ? cout - co : 32;
    if (cols > 16)
      outer_rows<2>(f_rows, g_rows, n, cin, co, t, cout, 0xFFFF, lane_mask(cols - 16));
    else
      outer_rows<1>(f_rows, g_rows, n, cin, co, t, cout, lane_mask(cols), 0);
  }
}

}  // namespace

const GemmKernel& gemm_kernel_avx512() {
  static const GemmKernel kernel{"avx512", kMR, kNR, &accumulate, &outer_accumulate};
  return kernel;
}

}  // namespace detail
}  // namespace clean_deploy
