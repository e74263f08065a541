// CPU emulation of CUDA kernels (verification only): each block runs its threads as std::threads with
// a barrier (kernels that synchronise) or one after the other (kernels that do not).
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>
#include "cuda_runtime_api.h"
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
using std::min; using std::max;
struct dim3 { unsigned x = 1, y = 1, z = 1; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
namespace emu {
struct Block { std::barrier<>* bar = nullptr; std::atomic<int> flag{0}; std::vector<char> dyn; };
inline thread_local dim3 tIdx, bIdx, bDim, gDim;
inline thread_local Block* blk = nullptr;
inline void run(dim3 grid, dim3 block, size_t smem, bool threads, const std::function<void()>& body) {
  const unsigned nthreads = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by) for (unsigned bx = 0; bx < grid.x; ++bx) {
    Block b; b.dyn.assign(smem + 16, 0);
    std::barrier<> bar(nthreads); b.bar = &bar;
    auto thread_fn = [&](unsigned t) {
      bIdx = dim3(bx, by, bz); gDim = grid; bDim = block; tIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y)); blk = &b;
      body();
      if (threads) bar.arrive_and_drop();
    };
    if (threads) { std::vector<std::thread> ts; for (unsigned t = 0; t < nthreads; ++t) ts.emplace_back(thread_fn, t); for (auto& th : ts) th.join(); }
    else for (unsigned t = 0; t < nthreads; ++t) thread_fn(t);
  }
}
inline void sync() { blk->bar->arrive_and_wait(); }
inline int sync_or(int x) { if (x) blk->flag.store(1); sync(); int r = blk->flag.load(); sync(); if (tIdx.x == 0 && tIdx.y == 0) blk->flag.store(0); sync(); return r; }
}
#define threadIdx (emu::tIdx)
#define blockIdx (emu::bIdx)
#define blockDim (emu::bDim)
#define gridDim (emu::gDim)
inline void __syncthreads() { emu::sync(); }
inline int __syncthreads_or(int x) { return emu::sync_or(x); }
inline void __syncwarp() { emu::sync(); }
template <class T> T atomicCAS(T* p, T cmp, T val) { __atomic_compare_exchange_n(p, &cmp, val, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); return cmp; }
template <class T> T atomicMin(T* p, T v) { T old = __atomic_load_n(p, __ATOMIC_SEQ_CST); while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {} return old; }
template <class T> T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
template <class T> T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline float fmaf_emu(float a, float b, float c) { return std::fmaf(a, b, c); }
// half
struct __half { uint16_t bits; };
inline float __half2float(__half h) {
  const uint32_t sign = (h.bits & 0x8000u) << 16; int32_t e = (h.bits >> 10) & 0x1F; uint32_t m = h.bits & 0x3FFu; uint32_t x;
  if (e == 0x1F) x = sign | 0x7F800000u | (m << 13);
  else if (e == 0) { if (!m) x = sign; else { e = 1; while (!(m & 0x400u)) m <<= 1, --e; m &= 0x3FFu; x = sign | ((uint32_t)(e - 15 + 127) << 23) | (m << 13); } }
  else x = sign | ((uint32_t)(e - 15 + 127) << 23) | (m << 13);
  float f; std::memcpy(&f, &x, 4); return f; }
inline __half __float2half_rn(float f) {
  uint32_t x; std::memcpy(&x, &f, 4); const uint32_t sign = (x >> 16) & 0x8000u; const int32_t e = (int32_t)((x >> 23) & 0xFF) - 127 + 15; uint32_t m = x & 0x7FFFFFu;
  auto H = [](uint32_t v) { __half h; h.bits = (uint16_t)v; return h; };
  if (((x >> 23) & 0xFF) == 0xFF) return H(sign | 0x7C00u | (m ? 0x200u : 0u));
  if (e >= 31) return H(sign | 0x7C00u);
  if (e <= 0) { if (e < -10) return H(sign); m |= 0x800000u; const int sh = 14 - e; uint32_t h = m >> sh; const uint32_t rem = m & ((1u << sh) - 1), half = 1u << (sh - 1); if (rem > half || (rem == half && (h & 1u))) ++h; return H(sign | h); }
  uint32_t h = ((uint32_t)e << 10) | (m >> 13); const uint32_t rem = m & 0x1FFFu; if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h; return H(sign | h); }
// CUB subset
namespace cub {
template <class K> uint64_t kbits(K k, int b0, int b1) { uint64_t u = 0; std::memcpy(&u, &k, sizeof(K)); if constexpr (std::is_same_v<K, float>) { uint32_t v = (uint32_t)u; v = (v & 0x80000000u) ? ~v : (v | 0x80000000u); u = v; } const int w = b1 - b0; return w >= 64 ? (u >> b0) : ((u >> b0) & ((uint64_t{1} << w) - 1)); }
struct DeviceRadixSort {
  template <class K, class V> static cudaError_t sort(void* tmp, size_t& bytes, const K* ki, K* ko, const V* vi, V* vo, int n, int b0, int b1, bool desc) {
    if (!tmp) { bytes = 16; return cudaSuccess; }
    std::vector<int> ord(n); std::iota(ord.begin(), ord.end(), 0);
    std::stable_sort(ord.begin(), ord.end(), [&](int a, int b) { const uint64_t x = kbits(ki[a], b0, b1), y = kbits(ki[b], b0, b1); return desc ? x > y : x < y; });
    std::vector<K> kt(n); std::vector<V> vt(n); for (int i = 0; i < n; ++i) kt[i] = ki[ord[i]], vt[i] = vi[ord[i]];
    std::copy(kt.begin(), kt.end(), ko); std::copy(vt.begin(), vt.end(), vo); return cudaSuccess; }
  template <class K, class V> static cudaError_t SortPairs(void* t, size_t& b, const K* ki, K* ko, const V* vi, V* vo, int n, int b0 = 0, int b1 = sizeof(K) * 8, cudaStream_t = nullptr) { return sort(t, b, ki, ko, vi, vo, n, b0, b1, false); }
  template <class K, class V> static cudaError_t SortPairsDescending(void* t, size_t& b, const K* ki, K* ko, const V* vi, V* vo, int n, int b0 = 0, int b1 = sizeof(K) * 8, cudaStream_t = nullptr) { return sort(t, b, ki, ko, vi, vo, n, b0, b1, true); }
};
struct DeviceScan {
  template <class T> static cudaError_t InclusiveSum(void* tmp, size_t& bytes, const T* in, T* out, int n, cudaStream_t = nullptr) { if (!tmp) { bytes = 16; return cudaSuccess; } T s = 0; for (int i = 0; i < n; ++i) out[i] = (s += in[i]); return cudaSuccess; }
};
}
