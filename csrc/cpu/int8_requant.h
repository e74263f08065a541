// Requantisation of int32 accumulators to int8 (specification: clean_deploy/sparse_conv_int8.h),
// written once as a plain loop and compiled into every int8 ISA file, so that each vectorises it
// for its own instruction set. No library calls and no aliasing through the int8 output (restrict
// pointers): std::nearbyint / std::min on floats would keep it scalar. `static`: each ISA file keeps
// its own copy (an inline function would be merged across them by the linker, ISA and all).
#pragma once

#include <cstdint>

namespace clean_deploy {
namespace detail {

// out[r * cout + c] = clamp(round_half_even(float(acc[r * ld + c]) * m[c]), lo, 127) for r < rows,
// c < cout. lo is 0 (ReLU) or -128.
static inline void requantize_rows(const int32_t* __restrict acc, int64_t ld, int64_t rows, int64_t cout,
                            const float* __restrict m, float lo, int8_t* __restrict out) {
  const float magic = 12582912.0f;  // 1.5 * 2^23: (v + magic) - magic rounds half to even for |v| < 2^22
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* __restrict a = acc + r * ld;
    int8_t* __restrict o = out + r * cout;
    for (int64_t c = 0; c < cout; ++c) {
      float v = static_cast<float>(a[c]) * m[c];
      v = v < -129.0f ? -129.0f : v;  // clamping first leaves the final result unchanged
      v = v > 128.0f ? 128.0f : v;
      v = (v + magic) - magic;
      v = v < lo ? lo : v;
      v = v > 127.0f ? 127.0f : v;
      o[c] = static_cast<int8_t>(static_cast<int32_t>(v));
    }
  }
}

}  // namespace detail
}  // namespace clean_deploy
