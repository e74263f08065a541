// Run-time choice of the SGEMM micro-kernel from the CPU's features, and weight packing.
#include <cstdlib>
#include <cstring>

#include "clean_deploy/sparse_conv.h"
#include "gemm_kernels.h"

namespace clean_deploy {
namespace detail {

namespace {

const GemmKernel& choose() {
  const int cap = cpu_isa_cap();
#if defined(CLEAN_DEPLOY_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (cap >= 2 && __builtin_cpu_supports("avx512f")) return gemm_kernel_avx512();
  if (cap >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return gemm_kernel_avx2();
#else
  (void)cap;
#endif
  return gemm_kernel_generic();
}

}  // namespace

int cpu_isa_cap() {
  const char* env = std::getenv("CLEAN_DEPLOY_CPU_ISA");
  return !env || !*env ? 2 : std::strcmp(env, "generic") == 0 ? 0 : std::strcmp(env, "avx2") == 0 ? 1 : 2;
}

const GemmKernel& select_gemm_kernel() {
  static const GemmKernel& kernel = choose();
  return kernel;
}

void pack_weight_panels(const float* weight, int64_t cout, int64_t kernel_volume, int64_t cin, int64_t k, int nr,
                        float* dst) {
  const int64_t panels = (cout + nr - 1) / nr;
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t c = 0; c < cin; ++c) {
      float* d = dst + (p * cin + c) * nr;
      for (int j = 0; j < nr; ++j) {
        const int64_t o = p * nr + j;
        d[j] = o < cout ? weight[(o * kernel_volume + k) * cin + c] : 0.0f;
      }
    }
  }
}

}  // namespace detail

const char* gemm_isa_name() { return detail::select_gemm_kernel().name; }

}  // namespace clean_deploy
