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

#include <array>
#include <utility>

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

// Row-stationary accumulation (int8_kernels.h) for NP panels of 16 columns and Q = ceil(cin / 4)
// input quads, both compile-time: one output row at a time, its sums in registers over every present
// kernel offset. A neighbour's full quads are broadcast straight from memory; a partial last quad
// is read with a byte mask (never past the row). Quads go to CH independent accumulator chains
// (vpdpbusd's latency would otherwise serialise them), summed at the end.
template <int NP, int Q, bool TAIL>
void rows_npq(const int8_t* features, const int32_t* nbr, int64_t K, int64_t rows, const int8_t* w, int64_t w_stride,
              const int32_t* comp, int64_t cin, int32_t* acc, int64_t ld) {
  constexpr int CH = Q < 4 ? Q : 4;
  constexpr int FULL = TAIL ? Q - 1 : Q;  // quads read whole
  const __mmask64 tail = (uint64_t{1} << (cin - 4 * FULL)) - 1;
  const __m512i flip = _mm512_set1_epi32(static_cast<int32_t>(0x80808080u));
  const __m512i iota0 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i iota1 = _mm512_add_epi32(iota0, _mm512_set1_epi32(16));
  const __m512i zero = _mm512_setzero_si512();
  alignas(64) int32_t js[48], ks[48];  // a chunk's second half is stored whole at c0 <= 16
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* nb = nbr + r * K;
    __m512i s[CH][NP], cs[NP];
    for (int p = 0; p < NP; ++p) {
      for (int c = 0; c < CH; ++c) s[c][p] = _mm512_setzero_si512();
      cs[p] = _mm512_setzero_si512();
    }
    // the row's present offsets, 32 at a time, compacted without a branch per offset (a fixed
    // stack buffer: this file holds nothing but intrinsics, see int8_kernels.h)
    for (int64_t k0 = 0; k0 < K; k0 += 32) {
      const int64_t kc = K - k0 < 32 ? K - k0 : 32;
      const __mmask16 hi = static_cast<__mmask16>(kc >= 16 ? (1u << (kc - 16)) - 1 : 0);
      const __mmask16 lo = static_cast<__mmask16>(kc >= 16 ? 0xFFFF : (1u << kc) - 1);
      const __m512i n0 = _mm512_maskz_loadu_epi32(lo, nb + k0), n1 = _mm512_maskz_loadu_epi32(hi, nb + k0 + 16);
      const __mmask16 m0 = _mm512_mask_cmpge_epi32_mask(lo, n0, zero), m1 = _mm512_mask_cmpge_epi32_mask(hi, n1, zero);
      const int c0 = __builtin_popcount(m0);
      _mm512_storeu_si512(js, _mm512_maskz_compress_epi32(m0, n0));
      _mm512_storeu_si512(ks, _mm512_maskz_compress_epi32(m0, iota0));
      _mm512_storeu_si512(js + c0, _mm512_maskz_compress_epi32(m1, n1));
      _mm512_storeu_si512(ks + c0, _mm512_maskz_compress_epi32(m1, iota1));
      const int n = c0 + __builtin_popcount(m1);
      for (int i = 0; i < n; ++i) {
        const int8_t* a = features + static_cast<int64_t>(js[i]) * cin;
        const int64_t k = k0 + ks[i];
        const __m512i* wv = reinterpret_cast<const __m512i*>(w + k * w_stride);
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
          __m512i x;
          if (q < FULL) {
            int32_t v;
            __builtin_memcpy(&v, a + 4 * q, 4);
            x = _mm512_xor_si512(_mm512_set1_epi32(v), flip);
          } else {
            x = _mm512_xor_si512(_mm512_broadcastd_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(tail, a + 4 * q))),
                                 flip);
          }
          for (int p = 0; p < NP; ++p)
            s[q % CH][p] = _mm512_dpbusd_epi32(s[q % CH][p], x, _mm512_loadu_si512(wv + p * Q + q));
        }
        for (int p = 0; p < NP; ++p) cs[p] = _mm512_add_epi32(cs[p], _mm512_loadu_si512(comp + k * ld + p * 16));
      }
    }
    int32_t* dst = acc + r * ld;
    for (int p = 0; p < NP; ++p) {
      __m512i t = _mm512_sub_epi32(_mm512_loadu_si512(dst + p * 16), cs[p]);
      for (int c = 0; c < CH; ++c) t = _mm512_add_epi32(t, s[c][p]);
      _mm512_storeu_si512(dst + p * 16, t);
    }
  }
}

using RowsFn = void (*)(const int8_t*, const int32_t*, int64_t, int64_t, const int8_t*, int64_t, const int32_t*,
                        int64_t, int32_t*, int64_t);

template <int NP, bool TAIL, int... Qs>
constexpr std::array<RowsFn, sizeof...(Qs)> rows_table(std::integer_sequence<int, Qs...>) {
  return {&rows_npq<NP, Qs + 1, TAIL>...};
}

constexpr int kMaxRowQuads = 16;  // cin <= 64
// [panels - 1][cin % 4 != 0][quads - 1]
constexpr std::array<std::array<std::array<RowsFn, kMaxRowQuads>, 2>, 2> kRows{{
    {{rows_table<1, false>(std::make_integer_sequence<int, kMaxRowQuads>{}),
      rows_table<1, true>(std::make_integer_sequence<int, kMaxRowQuads>{})}},
    {{rows_table<2, false>(std::make_integer_sequence<int, kMaxRowQuads>{}),
      rows_table<2, true>(std::make_integer_sequence<int, kMaxRowQuads>{})}},
}};

void accumulate_rows(const int8_t* features, const int32_t* nbr, int64_t K, int64_t rows, const int8_t* w,
                     int64_t w_stride, const int32_t* comp, int64_t cin, int64_t cout, int32_t* acc, int64_t ld) {
  const int64_t q = (cin + 3) / 4;
  if (q == 0) return;  // no input channels: the sums are the bias
  kRows[cout <= 16 ? 0 : 1][cin % 4 != 0][q - 1](features, nbr, K, rows, w, w_stride, comp, cin, acc, ld);
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
  static const Int8Kernel k{"avx512_vnni", kMR, Int8Layout::kQuads16, true, accumulate, 2, 4 * kMaxRowQuads,
                            accumulate_rows, requantize};
  return k;
}

}  // namespace detail
}  // namespace clean_deploy
