// Int8 micro-kernels of the int8 sparse conv: int32 C rows += int8 A rows x int8 W_k^T for lists of
// gathered row pointers (one kernel offset k at a time).
//
// As for the SGEMM kernels (gemm_kernels.h), each instruction set has its own translation unit
// with its own flags (int8_generic.cpp, int8_avx2.cpp with -mavx2, int8_vnni.cpp with
// -mavx512f -mavx512bw -mavx512vnni) holding nothing but intrinsics; sparse_conv_int8.cpp picks one
// at run time and packs the weights in its layout. All arithmetic is exact int32, so every kernel
// gives the same bits.
#pragma once

#include <cstdint>

namespace clean_deploy {
namespace detail {

enum class Int8Layout {
  kRowMajor,   // [cout][cin] int8
  kPairs8,     // panels of 8 columns; per input-channel pair: 8 x (w[c][2p], w[c][2p+1]) as int16 (32 bytes)
  kQuads16,    // panels of 16 columns; per input-channel quad: 16 x w[c][4q .. 4q+3] as int8 (64 bytes)
};

struct Int8Kernel {
  const char* name;
  int mr;  // rows per micro tile: callers pad the row lists to a multiple of mr
  Int8Layout layout;
  bool needs_comp;  // VNNI: multiplies (x + 128) as unsigned bytes; comp[c] = 128 * sum_ci w[c][ci]
  // For i in [0, n), n a multiple of mr: c_rows[i][0:cout] += sum_ci a_rows[i][ci] * W[c][ci]. C rows
  // have room for cout rounded up to 16 (the kernels may write the padding columns). A rows are
  // read only inside [0, cin). Padding rows should point at a zero A row and a scratch C row.
  void (*accumulate)(const int8_t* const* a_rows, int32_t* const* c_rows, int64_t n, const int8_t* w,
                     const int32_t* comp, int64_t cin, int64_t cout);
  // Row-stationary form for narrow layers (cout <= 16 * max_row_panels, cin <= max_row_cin), or
  // null: for each output row r in [0, rows), acc[r * ld + 0:cout] += sum over kernel offsets k with j = nbr[r * K + k] >= 0 of
  // features[j] x W_k^T (W_k at w + k * w_stride, comp at comp + k * ld). The row's sums stay in
  // registers across all offsets, so narrow layers skip the per-offset row lists and the per-offset
  // read-modify-write of the accumulator rows.
  int max_row_panels;
  int max_row_cin;
  void (*accumulate_rows)(const int8_t* features, const int32_t* nbr, int64_t K, int64_t rows, const int8_t* w,
                          int64_t w_stride, const int32_t* comp, int64_t cin, int64_t cout, int32_t* acc,
                          int64_t ld);
  // int8_requant.h's requantize_rows, compiled for this ISA
  void (*requantize)(const int32_t* acc, int64_t ld, int64_t rows, int64_t cout, const float* m, float lo,
                     int8_t* out);
};

const Int8Kernel& int8_kernel_generic();
#if defined(CLEAN_DEPLOY_HAVE_X86_KERNELS)
const Int8Kernel& int8_kernel_avx2();
const Int8Kernel& int8_kernel_vnni();
#endif

// The best int8 kernel this CPU supports (CLEAN_DEPLOY_CPU_ISA=generic|avx2 caps the choice).
const Int8Kernel& select_int8_kernel();

}  // namespace detail
}  // namespace clean_deploy
