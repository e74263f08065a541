// AVX-512 VNNI int8 micro-kernel: vpdpbusd multiplies 4 unsigned by 4 signed bytes and adds them
// into an int32 lane (no saturation). Features are signed, so they enter as x + 128 (x ^ 0x80) and
// the kernel subtracts comp[c] = 128 * sum_ci w[c][ci] once per row and kernel offset: the result is
// the exact signed sum. Tile: 4 rows x 2 panels of 16 columns. Compiled with
// -mavx512f -mavx512bw -mavx512vnni; called only on CPUs that support them.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports the _mm512_undefined_* placeholders inside avx512fintrin.h as maybe-uninitialised
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "int8_kernels.h"

namespace clean_deploy {
namespace detail {

namespace {

constexpr int kMR = 4;

// bytes x[4q .. 4q+3] (0 beyond cin) shifted to unsigned (x + 128)
inline int32_t quad(const int8_t* a, int64_t q, int64_t cin) {
  const int64_t c = 4 * q;
  uint32_t v = 0;
  if (c + 4 <= cin) {
    __builtin_memcpy(&v, a + c, 4);
  } else {
    for (int64_t j = c; j < cin; ++j) v |= static_cast<uint32_t>(static_cast<uint8_t>(a[j])) << (8 * (j - c));
  }
  return static_cast<int32_t>(v ^ 0x80808080u);
}

template <int NP>
inline void tile(const int8_t* const* a, int32_t* const* c, const int8_t* w, const int32_t* comp, int64_t quads,
                 int64_t cin, int64_t panel) {
  __m512i acc[kMR][NP];
  for (int r = 0; r < kMR; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_setzero_si512();
  const __m512i* wv = reinterpret_cast<const __m512i*>(w);
  for (int64_t q = 0; q < quads; ++q) {
    __m512i b[NP];
    for (int p = 0; p < NP; ++p) b[p] = _mm512_loadu_si512(wv + (panel + p) * quads + q);
    for (int r = 0; r < kMR; ++r) {
      const __m512i x = _mm512_set1_epi32(quad(a[r], q, cin));
      for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], x, b[p]);
    }
  }
  for (int p = 0; p < NP; ++p) {
    const __m512i cp = _mm512_loadu_si512(comp + (panel + p) * 16);
    for (int r = 0; r < kMR; ++r) {
      int32_t* dst = c[r] + (panel + p) * 16;
      _mm512_storeu_si512(dst, _mm512_add_epi32(_mm512_loadu_si512(dst), _mm512_sub_epi32(acc[r][p], cp)));
    }
  }
}

void accumulate(const int8_t* const* a_rows, int32_t* const* c_rows, int64_t n, const int8_t* w,
                const int32_t* comp, int64_t cin, int64_t cout) {
  const int64_t quads = (cin + 3) / 4, panels = (cout + 15) / 16;
  for (int64_t g = 0; g < n; g += kMR) {
    int64_t p = 0;
    for (; p + 2 <= panels; p += 2) tile<2>(a_rows + g, c_rows + g, w, comp, quads, cin, p);
    if (p < panels) tile<1>(a_rows + g, c_rows + g, w, comp, quads, cin, p);
  }
}

// requantize_rows (int8_requant.h) in 16-lane vectors: the same float32 product, clamp to
// [-129, 128], vcvtps2dq rounds half to even (MXCSR's default mode, as the scalar 1.5 * 2^23 trick),
// clamp to [lo, 127], narrow. Bitwise the scalar loop's result (tests/test_int8_sparse_conv.py).
void requantize(const int32_t* acc, int64_t ld, int64_t rows, int64_t cout, const float* m, float lo, int8_t* out) {
  const __m512 vmin = _mm512_set1_ps(-129.0f), vmax = _mm512_set1_ps(128.0f);
  const __m512i ilo = _mm512_set1_epi32(static_cast<int32_t>(lo)), ihi = _mm512_set1_epi32(127);
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* a = acc + r * ld;
    int8_t* o = out + r * cout;
    for (int64_t c = 0; c < cout; c += 16) {
      const __mmask16 k = cout - c >= 16 ? static_cast<__mmask16>(0xFFFF)
                                         : static_cast<__mmask16>((1u << (cout - c)) - 1);
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(k, a + c)), _mm512_maskz_loadu_ps(k, m + c));
      v = _mm512_min_ps(_mm512_max_ps(v, vmin), vmax);
      const __m512i i = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(v), ilo), ihi);
      _mm512_mask_cvtsepi32_storeu_epi8(o + c, k, i);
    }
  }
}

}  // namespace

const Int8Kernel& int8_kernel_vnni() {
  static const Int8Kernel k{"avx512_vnni", kMR, Int8Layout::kQuads16, true, accumulate, requantize};
  return k;
}

}  // namespace detail
}  // namespace clean_deploy
