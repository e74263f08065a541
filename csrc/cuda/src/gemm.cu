// Output-stationary gather-GEMM of clean_deploy::SparseConvolution (implicit GEMM over the
// output-major neighbour table of rulebook.cu), float32 or float16 storage, float32 accumulation.
//
// A block owns a BM x BN tile of the output (rows = output sites, columns = output channels) and a
// thread a 4 x 4 sub-tile, so every output element has exactly one owner: no atomics, no
// reduction across threads, results independent of scheduling. For each kernel offset k in order,
// the block gathers the feature rows of its outputs' neighbours at k (skipping k when none of its
// rows has one), in chunks of BK input channels, into shared memory next to W[:, k, chunk], and
// every thread accumulates acc = fma(a, w, acc) in channel order. An element is therefore bias,
// then the offsets k = 0..K-1, each over c = 0..cin-1 with one FMA per term: the sequence of the
// CPU kernel's AVX2 / AVX-512 micro-kernels (csrc/cpu/gemm_avx2.cpp), so float32 results normally
// agree with them bitwise. Offsets without a neighbour are skipped (not multiplied by zero), as
// on the CPU.
#include <cuda_fp16.h>

#include <algorithm>

#include "common.h"

namespace clean_deploy {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTM = 4, kTN = 4, kBK = 16;

__device__ __forceinline__ float load_f(const float* p) { return *p; }
__device__ __forceinline__ float load_f(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__half* p, float v) { *p = __float2half_rn(v); }

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(kThreads)
    gather_gemm(const T* __restrict__ feat, int64_t n_in, int32_t cin, const int32_t* __restrict__ nbr,
                int64_t max_out, const int32_t* __restrict__ num_out, int32_t K, const float* __restrict__ weight,
                const float* __restrict__ bias, int32_t cout, int32_t relu, T* __restrict__ out) {
  constexpr int TX = BN / kTN;  // threads along the columns
  constexpr int TY = BM / kTM;  // threads along the rows
  static_assert(TX * TY == kThreads, "tile shape must match the block size");
  __shared__ float As[kBK][BM];
  __shared__ float Ws[kBK][BN];
  __shared__ int32_t idx[BM];

  const int64_t rows = num_out ? min(static_cast<int64_t>(*num_out), max_out) : max_out;
  const int64_t row0 = blockIdx.x * static_cast<int64_t>(BM);
  if (row0 >= rows) return;
  const int col0 = blockIdx.y * BN;
  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;

  float acc[kTM][kTN];
#pragma unroll
  for (int tn = 0; tn < kTN; ++tn) {
    const int col = col0 + tx * kTN + tn;
    const float b = (bias != nullptr && col < cout) ? bias[col] : 0.0f;
#pragma unroll
    for (int tm = 0; tm < kTM; ++tm) acc[tm][tn] = b;
  }

  for (int32_t k = 0; k < K; ++k) {
    __syncthreads();  // idx / tiles of the previous offset are no longer read
    int any = 0;
    for (int r = tid; r < BM; r += kThreads) {
      const int64_t row = row0 + r;
      int32_t j = row < rows ? nbr[row * K + k] : -1;
      if (j >= n_in) j = -1;  // memory safety for a corrupt table
      idx[r] = j;
      any |= j >= 0;
    }
    if (!__syncthreads_or(any)) continue;
    bool has[kTM];
#pragma unroll
    for (int tm = 0; tm < kTM; ++tm) has[tm] = idx[ty * kTM + tm] >= 0;

    for (int32_t c0 = 0; c0 < cin; c0 += kBK) {
      const int kc = min(kBK, cin - c0);
      for (int e = tid; e < BM * kBK; e += kThreads) {
        const int r = e / kBK, c = e % kBK;
        const int32_t j = idx[r];
        As[c][r] = (j >= 0 && c < kc) ? load_f(feat + static_cast<int64_t>(j) * cin + c0 + c) : 0.0f;
      }
      for (int e = tid; e < BN * kBK; e += kThreads) {
        const int jj = e / kBK, c = e % kBK;
        const int col = col0 + jj;
        Ws[c][jj] = (col < cout && c < kc) ? weight[(static_cast<int64_t>(col) * K + k) * cin + c0 + c] : 0.0f;
      }
      __syncthreads();
      for (int c = 0; c < kc; ++c) {
        float a[kTM], w[kTN];
#pragma unroll
        for (int tm = 0; tm < kTM; ++tm) a[tm] = As[c][ty * kTM + tm];
#pragma unroll
        for (int tn = 0; tn < kTN; ++tn) w[tn] = Ws[c][tx * kTN + tn];
#pragma unroll
        for (int tm = 0; tm < kTM; ++tm)
#pragma unroll
          for (int tn = 0; tn < kTN; ++tn) acc[tm][tn] = has[tm] ? fmaf(a[tm], w[tn], acc[tm][tn]) : acc[tm][tn];
      }
      __syncthreads();
    }
  }

#pragma unroll
  for (int tm = 0; tm < kTM; ++tm) {
    const int64_t row = row0 + ty * kTM + tm;
    if (row >= rows) continue;
#pragma unroll
    for (int tn = 0; tn < kTN; ++tn) {
      const int col = col0 + tx * kTN + tn;
      if (col >= cout) continue;
      float v = acc[tm][tn];
      if (relu) v = v < 0.0f ? 0.0f : v;  // NaN stays NaN, as on the CPU
      store_f(out + row * cout + col, v);
    }
  }
}

template <typename T, int BM, int BN>
void launch(const void* feat, int64_t n_in, int32_t cin, const int32_t* nbr, int64_t max_out, const int32_t* num_out,
            int32_t K, const float* weight, const float* bias, int32_t cout, int32_t relu, void* out,
            cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(max_out, BM)), static_cast<unsigned>(ceil_div(cout, BN)));
  gather_gemm<T, BM, BN><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(feat), n_in, cin, nbr, max_out, num_out,
                                                        K, weight, bias, cout, relu, static_cast<T*>(out));
}

template <typename T>
void dispatch(const void* feat, int64_t n_in, int32_t cin, const int32_t* nbr, int64_t max_out, const int32_t* num_out,
              int32_t K, const float* weight, const float* bias, int32_t cout, int32_t relu, void* out,
              cudaStream_t stream) {
  // the column tile follows the output width (SECOND-style backbones: 16 .. 128 channels)
  if (cout <= 16)
    launch<T, 256, 16>(feat, n_in, cin, nbr, max_out, num_out, K, weight, bias, cout, relu, out, stream);
  else if (cout <= 32)
    launch<T, 128, 32>(feat, n_in, cin, nbr, max_out, num_out, K, weight, bias, cout, relu, out, stream);
  else
    launch<T, 64, 64>(feat, n_in, cin, nbr, max_out, num_out, K, weight, bias, cout, relu, out, stream);
}

}  // namespace

}  // namespace cuda
}  // namespace clean_deploy

using namespace clean_deploy::cuda;

extern "C" cdCudaStatus cdSparseConvGemm(cdDataType dtype, const void* d_features, int64_t n_in, int32_t cin,
                                         const int32_t* d_neighbors, int64_t max_outputs, const int32_t* d_num_out,
                                         int32_t kernel_volume, const float* d_weight, const float* d_bias,
                                         int32_t cout, int32_t relu, void* d_out, cudaStream_t stream) {
  if (dtype != CD_FLOAT32 && dtype != CD_FLOAT16)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "sparse conv GEMM: dtype must be CD_FLOAT32 or CD_FLOAT16");
  if (n_in < 0 || cin < 0 || cout < 0 || max_outputs < 0 || kernel_volume < 1)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "sparse conv GEMM: negative size or kernel_volume < 1");
  if (max_outputs == 0 || cout == 0) return ok();
  if (!d_neighbors || !d_out || (cin > 0 && (!d_weight || (n_in > 0 && !d_features))))
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "sparse conv GEMM: NULL device pointer");
  if (ceil_div(max_outputs, 64) > 0x7FFFFFFF)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "sparse conv GEMM: too many output rows");
  if (dtype == CD_FLOAT32)
    dispatch<float>(d_features, n_in, cin, d_neighbors, max_outputs, d_num_out, kernel_volume, d_weight, d_bias, cout,
                    relu, d_out, stream);
  else
    dispatch<__half>(d_features, n_in, cin, d_neighbors, max_outputs, d_num_out, kernel_volume, d_weight, d_bias, cout,
                     relu, d_out, stream);
  CD_TRY_CUDA(cudaGetLastError(), "sparse conv GEMM launch");
  return ok();
}
