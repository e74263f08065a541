// Internal helpers of the CUDA kernels (host side): error reporting into cdCudaLastError, CUDA call
// checks and carving one caller-provided workspace into aligned sub-buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "clean_deploy_cuda.h"

namespace clean_deploy {
namespace cuda {

// Sets the thread's last error message and returns `status` (for `return fail(...)`).
cdCudaStatus fail(cdCudaStatus status, const std::string& message);
// Clears the last error message and returns CD_CUDA_OK.
cdCudaStatus ok();
// CD_CUDA_ERR_CUDA with "<what>: <cuda error string>" unless err == cudaSuccess.
cdCudaStatus check_cuda(cudaError_t err, const char* what);

#define CD_TRY_CUDA(expr, what)                                  \
  do {                                                           \
    const cdCudaStatus cd_status_ = check_cuda((expr), (what));  \
    if (cd_status_ != CD_CUDA_OK) return cd_status_;             \
  } while (0)

#define CD_TRY(expr)                                  \
  do {                                                \
    const cdCudaStatus cd_status_ = (expr);           \
    if (cd_status_ != CD_CUDA_OK) return cd_status_;  \
  } while (0)

constexpr size_t kAlign = 256;
inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Sequential sub-allocation of a workspace. Used twice with the same calls: once without memory
// (base = nullptr) to size the workspace, once to hand out the pointers.
class Carver {
 public:
  explicit Carver(void* base = nullptr, size_t size = 0) : base_(static_cast<char*>(base)), size_(size) {}
  template <class T>
  T* take(size_t count) {
    const size_t at = used_;
    used_ += align_up(count * sizeof(T));
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }
  void* take_bytes(size_t bytes) { return take<char>(bytes); }
  size_t used() const { return used_; }
  bool fits() const { return base_ == nullptr || used_ <= size_; }

 private:
  char* base_;
  size_t size_;
  size_t used_ = 0;
};

template <class T>
std::string triple(const T* v) {
  std::ostringstream s;
  s << "(" << v[0] << ", " << v[1] << ", " << v[2] << ")";
  return s.str();
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Number of bits needed for values in [0, limit) (at least 1).
inline int bit_width_for(uint64_t limit) {
  int bits = 1;
  while (bits < 64 && (uint64_t{1} << bits) < limit) ++bits;
  return bits;
}

}  // namespace cuda
}  // namespace clean_deploy
