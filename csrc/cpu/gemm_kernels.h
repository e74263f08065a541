// SGEMM micro-kernels of the sparse conv: C rows += A rows x W for lists of gathered row pointers.
//
// Each instruction set has its own translation unit compiled with its own flags (gemm_generic.cpp,
// gemm_avx2.cpp with -mavx2 -mfma, gemm_avx512.cpp with -mavx512f); gemm_dispatch.cpp picks one at
// run time from the CPU's features, so the library runs on any x86-64 (no -march=native). The ISA
// files include nothing but intrinsics, so no inline STL code compiled for a newer ISA can leak
// into the rest of the library.
//
// Every output element is computed by the same sequence of operations whatever the tile it falls
// in (full or masked columns, padded rows), so results do not depend on how rows are grouped.
#pragma once

#include <cstdint>

namespace clean_deploy {
namespace detail {

struct GemmKernel {
  const char* name;
  int mr;  // rows per micro tile: callers pad the row lists to a multiple of mr
  int nr;  // columns per packed weight panel
  // For i in [0, n), n a multiple of mr:  c_rows[i][0:cout] += a_rows[i][0:cin] x W  (elementwise
  // in the order c = 0, 1, ..., cin-1, one fused multiply-add per term where the ISA has FMA).
  // W (cin x cout) is packed by pack_weight_panels with this kernel's nr. Rows of padding should
  // point at a zero A row and a scratch C row of at least round_up(cout, nr) floats.
  void (*accumulate)(const float* const* a_rows, float* const* c_rows, int64_t n, const float* w,
                     int64_t cin, int64_t cout);
  // Sum of outer products (the weight gradient of one kernel offset): for p = 0, 1, ..., n-1 in
  // order, T[ci][co] += f_rows[p][ci] * g_rows[p][co] for ci < cin, co < cout (one fused multiply-add
  // per term where the ISA has FMA). T is cin x cout, row-major. Register-blocked over (ci, co)
  // tiles; every element is the same chain of operations whatever tile it falls in.
  void (*outer_accumulate)(const float* const* f_rows, const float* const* g_rows, int64_t n, int64_t cin,
                           int64_t cout, float* t);
};

const GemmKernel& gemm_kernel_generic();
#if defined(CLEAN_DEPLOY_HAVE_X86_KERNELS)
const GemmKernel& gemm_kernel_avx2();
const GemmKernel& gemm_kernel_avx512();
#endif

// The best kernel this CPU supports (CLEAN_DEPLOY_CPU_ISA=generic|avx2|avx512 caps the choice).
const GemmKernel& select_gemm_kernel();

// CLEAN_DEPLOY_CPU_ISA as a cap on the instruction set: 0 generic, 1 avx2, 2 anything (unset or other).
// Shared by the float and int8 kernel choices.
int cpu_isa_cap();

// Floats of one packed weight matrix (cin x cout) for panels nr wide.
inline int64_t packed_weight_size(int64_t cin, int64_t cout, int nr) { return (cout + nr - 1) / nr * nr * cin; }

// Packs the kernel offset k of a spconv weight [cout, K, cin] into panels:
// dst[(p * cin + c) * nr + j] = weight[p * nr + j, k, c] (0 beyond cout).
void pack_weight_panels(const float* weight, int64_t cout, int64_t kernel_volume, int64_t cin, int64_t k,
                        int nr, float* dst);

}  // namespace detail
}  // namespace clean_deploy
