// AVX2 int8 micro-kernel: input channels in pairs, sign-extended to int16, multiplied and pair-summed
// exactly by vpmaddwd into 8 int32 columns (no saturating u8 x s8 step). Tile: 4 rows x 2 panels of
// 8 columns. Compiled with -mavx2; called only on CPUs that support it.
#include <immintrin.h>

#include "int8_kernels.h"
#include "int8_requant.h"

namespace clean_deploy {
namespace detail {

namespace {

constexpr int kMR = 4;

// int16(x[2p]) in the low half, int16(x[2p + 1]) in the high half (0 beyond cin)
inline int32_t pair(const int8_t* a, int64_t p, int64_t cin) {
  const int64_t c = 2 * p;
  const uint32_t lo = static_cast<uint16_t>(static_cast<int16_t>(a[c]));
  const uint32_t hi = c + 1 < cin ? static_cast<uint16_t>(static_cast<int16_t>(a[c + 1])) : 0u;
  return static_cast<int32_t>(lo | (hi << 16));
}

template <int NP>
inline void tile(const int8_t* const* a, int32_t* const* c, const int8_t* w, int64_t pairs, int64_t cin,
                 int64_t panel) {
  __m256i acc[kMR][NP];
  for (int r = 0; r < kMR; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = _mm256_setzero_si256();
  const __m256i* wv = reinterpret_cast<const __m256i*>(w);
  for (int64_t q = 0; q < pairs; ++q) {
    __m256i b[NP];
    for (int p = 0; p < NP; ++p) b[p] = _mm256_loadu_si256(wv + (panel + p) * pairs + q);
    for (int r = 0; r < kMR; ++r) {
      const __m256i x = _mm256_set1_epi32(pair(a[r], q, cin));
      for (int p = 0; p < NP; ++p) acc[r][p] = _mm256_add_epi32(acc[r][p], _mm256_madd_epi16(x, b[p]));
    }
  }
  for (int r = 0; r < kMR; ++r)
    for (int p = 0; p < NP; ++p) {
      __m256i* dst = reinterpret_cast<__m256i*>(c[r] + (panel + p) * 8);
      _mm256_storeu_si256(dst, _mm256_add_epi32(_mm256_loadu_si256(dst), acc[r][p]));
    }
}

void accumulate(const int8_t* const* a_rows, int32_t* const* c_rows, int64_t n, const int8_t* w,
                const int32_t* /*comp*/, int64_t cin, int64_t cout) {
  const int64_t pairs = (cin + 1) / 2, panels = (cout + 7) / 8;
  for (int64_t g = 0; g < n; g += kMR) {
    int64_t p = 0;
    for (; p + 2 <= panels; p += 2) tile<2>(a_rows + g, c_rows + g, w, pairs, cin, p);
    if (p < panels) tile<1>(a_rows + g, c_rows + g, w, pairs, cin, p);
  }
}

}  // namespace

const Int8Kernel& int8_kernel_avx2() {
  static const Int8Kernel k{"avx2", kMR, Int8Layout::kPairs8, false, accumulate, 0, 0, nullptr, requantize_rows};
  return k;
}

}  // namespace detail
}  // namespace clean_deploy
