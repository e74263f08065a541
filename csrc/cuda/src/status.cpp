// Status reporting of the CUDA C API: thread-local last error message, status names, device count.
#include <string>

#include "common.h"

namespace clean_deploy {
namespace cuda {

namespace {
std::string& last_error() {
  thread_local std::string message;
  return message;
}
}  // namespace

cdCudaStatus fail(cdCudaStatus status, const std::string& message) {
  last_error() = message;
  return status;
}

cdCudaStatus ok() {
  last_error().clear();
  return CD_CUDA_OK;
}

cdCudaStatus check_cuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return CD_CUDA_OK;
  return fail(CD_CUDA_ERR_CUDA,
              std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

const char* last_error_cstr() { return last_error().c_str(); }

}  // namespace cuda
}  // namespace clean_deploy

extern "C" {

const char* cdCudaLastError(void) { return clean_deploy::cuda::last_error_cstr(); }

const char* cdCudaStatusName(cdCudaStatus status) {
  switch (status) {
    case CD_CUDA_OK: return "CD_CUDA_OK";
    case CD_CUDA_ERR_INVALID_ARGUMENT: return "CD_CUDA_ERR_INVALID_ARGUMENT";
    case CD_CUDA_ERR_WORKSPACE: return "CD_CUDA_ERR_WORKSPACE";
    case CD_CUDA_ERR_CUDA: return "CD_CUDA_ERR_CUDA";
    case CD_CUDA_ERR_NO_DEVICE: return "CD_CUDA_ERR_NO_DEVICE";
  }
  return "CD_CUDA_ERR_UNKNOWN";
}

int cdCudaDeviceCount(void) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state of the runtime
    clean_deploy::cuda::fail(CD_CUDA_ERR_NO_DEVICE, std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) +
                                                        " (" + cudaGetErrorString(err) + ")");
    return 0;
  }
  if (count == 0) clean_deploy::cuda::fail(CD_CUDA_ERR_NO_DEVICE, "cudaGetDeviceCount: 0 devices");
  return count;
}

int cdCudaApiVersion(void) { return CD_CUDA_API_VERSION; }

}  // extern "C"
