// Plain C entry points of libclean_deploy_ort.so for tests and tools (Python ctypes): rulebook pair
// counts of a conv and the SGEMM and int8 kernels in use. They need no ONNX Runtime.
#include <cstring>
#include <exception>
#include <string>

#include "clean_deploy/sparse_conv.h"
#include "clean_deploy/sparse_conv_int8.h"
#include "rulebook_cache.h"

namespace {

void set_error(char* err, size_t err_len, const char* what) {
  if (!err || err_len == 0) return;
  std::strncpy(err, what, err_len - 1);
  err[err_len - 1] = '\0';
}

}  // namespace

// geometry: 15 int64 = kernel_size[3], stride[3], padding[3], dilation[3], spatial_shape[3] (z, y, x).
// Writes num_out and, when pair_counts is not null, K = kD*kH*kW counts. Returns 0, or -1 with a
// message in err.
extern "C" __attribute__((visibility("default"))) int clean_deploy_rulebook_pairs(
    const int32_t* indices, int64_t n, const int64_t* geometry, int subm, int64_t* num_out, int64_t* pair_counts,
    char* err, size_t err_len) {
  try {
    const clean_deploy::ConvGeometry g = clean_deploy::ConvGeometry::from_flat(geometry, subm != 0);
    const clean_deploy::SerialExecutor executor;
    const clean_deploy::Rulebook rb = clean_deploy::build_rulebook(indices, n, g, executor);
    if (num_out) *num_out = rb.num_out;
    if (pair_counts) {
      const auto counts = rb.pair_counts();
      std::memcpy(pair_counts, counts.data(), counts.size() * sizeof(int64_t));
    }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
  } catch (...) {
    set_error(err, err_len, "unknown error");
  }
  return -1;
}

// "avx512", "avx2" or "generic".
extern "C" __attribute__((visibility("default"))) const char* clean_deploy_gemm_isa() {
  return clean_deploy::gemm_isa_name();
}

// "avx512_vnni", "avx2" or "generic": the int8 micro-kernel of SparseConvolutionInt8.
extern "C" __attribute__((visibility("default"))) const char* clean_deploy_int8_isa() {
  return clean_deploy::int8_isa_name();
}

// Submanifold rulebook lookups of the ops since load (rulebook_cache.h): cache hits and misses.
extern "C" __attribute__((visibility("default"))) void clean_deploy_rulebook_cache_stats(int64_t* hits,
                                                                                          int64_t* misses) {
  clean_deploy::ort::rulebook_cache_stats(hits, misses);
}
