// GPU rulebook (index pairs) of clean_deploy::SparseConvolution, the analogue of
// csrc/cpu/rulebook.cpp with the same output-major neighbour table and the same output order.
//
// Sites are packed into int64 keys ((b * D + z) * H + y) * W + x (ordered like (b, z, y, x)).
//  - submanifold: the input keys go into an open-addressing hash table (linear probing, load <= 0.5,
//    the smallest row wins a key through atomicMin, so duplicates resolve deterministically and are
//    flagged); one thread per (output, offset) looks its neighbour up.
//  - regular / strided: every input emits its (output key, input row * K + offset) candidates into
//    a fixed-size slot range (unused slots get a sentinel key above every real key, so no host
//    synchronisation is needed to know the count); CUB's stable radix sort groups them by output key,
//    a head flag + inclusive scan numbers the distinct keys (= the output sites, sorted), and each
//    candidate writes its input row into neighbors[o * K + k]. The count is left on the device.
// No kernel depends on thread scheduling for its result.
#include <cub/cub.cuh>

#include <algorithm>
#include <limits>

#include "common.h"

namespace clean_deploy {
namespace cuda {

namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};
constexpr int kThreads = 256;

struct Grid {  // geometry as kernel arguments
  int32_t kernel[3], stride[3], padding[3], dilation[3];
  int64_t in_shape[3], out_shape[3];
  int64_t max_batch;  // exclusive
};

__device__ __forceinline__ uint64_t mix(uint64_t k) {  // murmur3 finaliser
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

__device__ __forceinline__ bool site_in_range(const int32_t* r, const Grid& g) {
  return r[0] >= 0 && r[0] < g.max_batch && r[1] >= 0 && r[1] < g.in_shape[0] && r[2] >= 0 && r[2] < g.in_shape[1] &&
         r[3] >= 0 && r[3] < g.in_shape[2];
}

__device__ __forceinline__ uint64_t pack(int64_t b, int64_t z, int64_t y, int64_t x, const int64_t* shape) {
  return static_cast<uint64_t>(((b * shape[0] + z) * shape[1] + y) * shape[2] + x);
}

__global__ void fill_i32(int32_t* p, int64_t n, int32_t value) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) p[i] = value;
}

// ---- submanifold ------------------------------------------------------------------------------

__global__ void hash_insert(const int32_t* __restrict__ indices, int64_t n, Grid g, unsigned long long* keys,
                            int32_t* vals, uint64_t mask, int32_t* error) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const int32_t* r = indices + 4 * i;
  if (!site_in_range(r, g)) {
    if (error) atomicOr(error, CD_CUDA_DATA_SITE_OUT_OF_RANGE);
    return;
  }
  const unsigned long long key = pack(r[0], r[1], r[2], r[3], g.in_shape);
  uint64_t slot = mix(key) & mask;
  while (true) {
    const unsigned long long prev = atomicCAS(keys + slot, static_cast<unsigned long long>(kEmptyKey), key);
    if (prev == kEmptyKey || prev == key) {
      if (prev == key && error) atomicOr(error, CD_CUDA_DATA_DUPLICATE_SITE);
      atomicMin(vals + slot, static_cast<int32_t>(i));
      return;
    }
    slot = (slot + 1) & mask;
  }
}

__device__ __forceinline__ int32_t hash_find(const unsigned long long* __restrict__ keys,
                                             const int32_t* __restrict__ vals, uint64_t mask, uint64_t key) {
  uint64_t slot = mix(key) & mask;
  while (true) {
    const unsigned long long k = keys[slot];
    if (k == key) return vals[slot];
    if (k == kEmptyKey) return -1;
    slot = (slot + 1) & mask;
  }
}

// One thread per (output row o, kernel offset k); neighbors[o * K + k].
__global__ void subm_neighbors(const int32_t* __restrict__ indices, int64_t n, Grid g, int64_t K,
                               const unsigned long long* __restrict__ keys, const int32_t* __restrict__ vals,
                               uint64_t mask, int32_t* __restrict__ neighbors) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= n * K) return;
  const int64_t o = t / K, k = t % K;
  const int32_t* r = indices + 4 * o;
  int32_t found = -1;
  if (site_in_range(r, g)) {
    const int64_t kx = k % g.kernel[2], ky = (k / g.kernel[2]) % g.kernel[1], kz = k / (int64_t{g.kernel[2]} * g.kernel[1]);
    const int64_t z = r[1] + (kz - g.kernel[0] / 2) * g.dilation[0];
    const int64_t y = r[2] + (ky - g.kernel[1] / 2) * g.dilation[1];
    const int64_t x = r[3] + (kx - g.kernel[2] / 2) * g.dilation[2];
    if (z >= 0 && z < g.in_shape[0] && y >= 0 && y < g.in_shape[1] && x >= 0 && x < g.in_shape[2])
      found = hash_find(keys, vals, mask, pack(r[0], z, y, x, g.in_shape));
  }
  neighbors[t] = found;
}

// ---- regular ----------------------------------------------------------------------------------

// Input i writes its candidates into slots [i * P, (i + 1) * P): key = output site key, value =
// i * K + k; unused slots get the sentinel key (sorted last) and value -1.
__global__ void regular_emit(const int32_t* __restrict__ indices, int64_t n, Grid g, int64_t K, int64_t P,
                             uint64_t sentinel, uint64_t* __restrict__ cand_keys, int32_t* __restrict__ cand_vals,
                             int32_t* error) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const int32_t* r = indices + 4 * i;
  uint64_t* kk = cand_keys + i * P;
  int32_t* vv = cand_vals + i * P;
  int64_t c = 0;
  if (site_in_range(r, g)) {
    // per axis, the kernel taps k with o * s - p + k * d == coordinate, 0 <= o < out
    for (int32_t kz = 0; kz < g.kernel[0]; ++kz) {
      const int64_t tz = r[1] + g.padding[0] - int64_t{kz} * g.dilation[0];
      if (tz < 0) break;
      if (tz % g.stride[0] || tz / g.stride[0] >= g.out_shape[0]) continue;
      for (int32_t ky = 0; ky < g.kernel[1]; ++ky) {
        const int64_t ty = r[2] + g.padding[1] - int64_t{ky} * g.dilation[1];
        if (ty < 0) break;
        if (ty % g.stride[1] || ty / g.stride[1] >= g.out_shape[1]) continue;
        for (int32_t kx = 0; kx < g.kernel[2]; ++kx) {
          const int64_t tx = r[3] + g.padding[2] - int64_t{kx} * g.dilation[2];
          if (tx < 0) break;
          if (tx % g.stride[2] || tx / g.stride[2] >= g.out_shape[2]) continue;
          if (c < P) {
            kk[c] = pack(r[0], tz / g.stride[0], ty / g.stride[1], tx / g.stride[2], g.out_shape);
            vv[c] = static_cast<int32_t>(i * K + (int64_t{kz} * g.kernel[1] + ky) * g.kernel[2] + kx);
          }
          ++c;
        }
      }
    }
  } else if (error) {
    atomicOr(error, CD_CUDA_DATA_SITE_OUT_OF_RANGE);
  }
  for (; c < P; ++c) {
    kk[c] = sentinel;
    vv[c] = -1;
  }
}

__global__ void head_flags(const uint64_t* __restrict__ keys, int64_t total, uint64_t sentinel,
                           int32_t* __restrict__ head) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= total) return;
  const uint64_t k = keys[c];
  head[c] = (k != sentinel && (c == 0 || keys[c - 1] != k)) ? 1 : 0;
}

__global__ void finish_count(const int32_t* __restrict__ pos, int64_t total, int64_t max_outputs, int32_t* num_out,
                             int32_t* count, int32_t* error) {
  const int64_t m = total > 0 ? pos[total - 1] : 0;
  const int64_t kept = m < max_outputs ? m : max_outputs;
  if (m > max_outputs && error) atomicOr(error, CD_CUDA_DATA_CAPACITY);
  *count = static_cast<int32_t>(kept);
  if (num_out) *num_out = static_cast<int32_t>(kept);
}

// Each distinct key (head) becomes output row pos - 1: unpack its site, clear its neighbour row.
__global__ void write_outputs(const uint64_t* __restrict__ keys, const int32_t* __restrict__ head,
                              const int32_t* __restrict__ pos, int64_t total, Grid g, int64_t K, int64_t max_outputs,
                              int32_t* __restrict__ out_indices, int32_t* __restrict__ neighbors) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= total || !head[c]) return;
  const int64_t o = pos[c] - 1;
  if (o >= max_outputs) return;
  uint64_t key = keys[c];
  int32_t* r = out_indices + 4 * o;
  r[3] = static_cast<int32_t>(key % g.out_shape[2]);
  key /= g.out_shape[2];
  r[2] = static_cast<int32_t>(key % g.out_shape[1]);
  key /= g.out_shape[1];
  r[1] = static_cast<int32_t>(key % g.out_shape[0]);
  r[0] = static_cast<int32_t>(key / g.out_shape[0]);
  for (int64_t k = 0; k < K; ++k) neighbors[o * K + k] = -1;
}

// Candidate c writes its input row into neighbors[o * K + k]. Two rows at one (o, k) are the same
// site (duplicate input): flagged, and the smaller row wins whatever the order.
__global__ void write_pairs(const uint64_t* __restrict__ keys, const int32_t* __restrict__ vals,
                            const int32_t* __restrict__ pos, int64_t total, uint64_t sentinel, int64_t K,
                            int64_t max_outputs, int32_t* neighbors, int32_t* error) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= total || keys[c] == sentinel) return;
  const int64_t o = pos[c] - 1;
  if (o >= max_outputs) return;
  const int32_t v = vals[c];
  const int32_t row = static_cast<int32_t>(v / K);
  int32_t* slot = neighbors + o * K + v % K;
  const int32_t prev = atomicCAS(slot, -1, row);
  if (prev != -1) {
    if (error) atomicOr(error, CD_CUDA_DATA_DUPLICATE_SITE);
    atomicMin(slot, row);
  }
}

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>(ceil_div(std::max<int64_t>(n, 1), kThreads)); }

// ---- host side --------------------------------------------------------------------------------

cdCudaStatus check_geometry(const cdSparseConvGeometry* g) {
  if (!g) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "sparse conv: geometry is NULL");
  auto check_min = [&](const int32_t* v, const char* name, int32_t min_value) -> cdCudaStatus {
    for (int a = 0; a < 3; ++a)
      if (v[a] < min_value)
        return fail(CD_CUDA_ERR_INVALID_ARGUMENT,
                    std::string(name) + " must be >= " + std::to_string(min_value) + " on every axis, got " + triple(v));
    return CD_CUDA_OK;
  };
  CD_TRY(check_min(g->kernel, "kernel_size", 1));
  CD_TRY(check_min(g->stride, "stride", 1));
  CD_TRY(check_min(g->padding, "padding", 0));
  CD_TRY(check_min(g->dilation, "dilation", 1));
  CD_TRY(check_min(g->in_shape, "spatial_shape", 1));
  for (int a = 0; a < 3; ++a)
    if (g->in_shape[a] > (1 << 30) || g->kernel[a] > (1 << 10) || g->stride[a] > (1 << 30) ||
        g->padding[a] > (1 << 30) || g->dilation[a] > (1 << 20))
      return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "kernel_size/stride/padding/dilation/spatial_shape value too large");
  if (int64_t{g->in_shape[0]} * g->in_shape[1] * g->in_shape[2] > (int64_t{1} << 50))
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "spatial_shape " + triple(g->in_shape) + " is too large");
  if (g->subm && (g->stride[0] != 1 || g->stride[1] != 1 || g->stride[2] != 1))
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT,
                "a submanifold conv (subm=1) needs stride (1, 1, 1), got " + triple(g->stride));
  if (g->max_batch < 0) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "max_batch must be >= 0 (0: unbounded)");
  int64_t out[3];
  cdSparseConvOutShape(g, out);
  for (int a = 0; a < 3; ++a)
    if (out[a] < 1)
      return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "kernel_size " + triple(g->kernel) + " with dilation " +
                                                    triple(g->dilation) + " and padding " + triple(g->padding) +
                                                    " does not fit spatial_shape " + triple(g->in_shape) +
                                                    " (output shape " + triple(out) + ")");
  return CD_CUDA_OK;
}

Grid make_grid(const cdSparseConvGeometry* g) {
  Grid d{};
  for (int a = 0; a < 3; ++a) {
    d.kernel[a] = g->kernel[a];
    d.stride[a] = g->stride[a];
    d.padding[a] = g->padding[a];
    d.dilation[a] = g->dilation[a];
    d.in_shape[a] = g->in_shape[a];
  }
  cdSparseConvOutShape(g, d.out_shape);
  // as the CPU kernel: keys stay below 2^62
  const int64_t cells = std::max<int64_t>(d.in_shape[0] * d.in_shape[1] * d.in_shape[2], 1);
  const int64_t cpu_bound = std::min<int64_t>(std::numeric_limits<int64_t>::max() / 4 / cells,
                                              std::numeric_limits<int32_t>::max()) + 1;
  d.max_batch = g->max_batch > 0 ? std::min<int64_t>(g->max_batch, cpu_bound) : cpu_bound;
  return d;
}

uint64_t hash_capacity(int64_t n) {
  uint64_t cap = 1024;
  while (cap < static_cast<uint64_t>(2 * n)) cap <<= 1;
  return cap;
}

struct RegularPlan {
  int64_t total = 0;  // n * P candidate slots
  uint64_t sentinel = 0;
  int end_bit = 1;
};

RegularPlan regular_plan(const cdSparseConvGeometry* g, const Grid& grid, int64_t n) {
  RegularPlan p;
  p.total = n * cdSparseConvMaxOutputsPerInput(g);
  const uint64_t limit = static_cast<uint64_t>(grid.max_batch) * static_cast<uint64_t>(
      grid.out_shape[0] * grid.out_shape[1] * grid.out_shape[2]);  // keys < limit
  p.end_bit = bit_width_for(limit + 1);
  p.sentinel = p.end_bit >= 64 ? ~uint64_t{0} : (uint64_t{1} << p.end_bit) - 1;
  return p;
}

// Lays out (and, with base != nullptr, hands out) the workspace of a regular conv rulebook.
struct RegularBuffers {
  uint64_t *keys_in, *keys_out;
  int32_t *vals_in, *vals_out, *head, *pos, *count;
  void* temp;
  size_t temp_bytes;
};

cdCudaStatus regular_buffers(const RegularPlan& p, Carver& carver, RegularBuffers& b, cudaStream_t stream) {
  const int items = static_cast<int>(p.total);
  size_t sort_bytes = 0, scan_bytes = 0;
  CD_TRY_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint64_t*>(nullptr),
                                              static_cast<uint64_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                              static_cast<int32_t*>(nullptr), items, 0, p.end_bit, stream),
              "cub::DeviceRadixSort::SortPairs (size query)");
  CD_TRY_CUDA(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, static_cast<const int32_t*>(nullptr),
                                            static_cast<int32_t*>(nullptr), items, stream),
              "cub::DeviceScan::InclusiveSum (size query)");
  b.keys_in = carver.take<uint64_t>(p.total);
  b.keys_out = carver.take<uint64_t>(p.total);
  b.vals_in = carver.take<int32_t>(p.total);
  b.vals_out = carver.take<int32_t>(p.total);
  b.head = carver.take<int32_t>(p.total);
  b.pos = carver.take<int32_t>(p.total);
  b.count = carver.take<int32_t>(1);
  b.temp_bytes = std::max<size_t>(std::max(sort_bytes, scan_bytes), 1);
  b.temp = carver.take_bytes(b.temp_bytes);
  return CD_CUDA_OK;
}

cdCudaStatus check_sizes(const cdSparseConvGeometry* g, int64_t n) {
  if (n < 0) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "negative number of active sites");
  const int64_t K = cdSparseConvKernelVolume(g);
  const int64_t P = cdSparseConvMaxOutputsPerInput(g);
  if (n > std::numeric_limits<int32_t>::max() / std::max<int64_t>(K, 1))
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "too many active sites for int32 (row * kernel volume) pair ids");
  if (!g->subm && n * P > std::numeric_limits<int32_t>::max())
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "too many (input, output) candidate pairs for one conv call");
  return CD_CUDA_OK;
}

}  // namespace

}  // namespace cuda
}  // namespace clean_deploy

using namespace clean_deploy::cuda;

extern "C" {

cdCudaStatus cdSparseConvCheckGeometry(const cdSparseConvGeometry* g) {
  CD_TRY(check_geometry(g));
  return ok();
}

cdCudaStatus cdSparseConvOutShape(const cdSparseConvGeometry* g, int64_t out_shape[3]) {
  if (!g || !out_shape) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "cdSparseConvOutShape: NULL argument");
  for (int a = 0; a < 3; ++a) {
    if (g->subm) {
      out_shape[a] = g->in_shape[a];
      continue;
    }
    const int64_t span = int64_t{g->in_shape[a]} + 2 * int64_t{g->padding[a]} -
                         int64_t{g->dilation[a]} * (g->kernel[a] - 1) - 1;
    out_shape[a] = span < 0 || g->stride[a] < 1 ? 0 : span / g->stride[a] + 1;
  }
  return CD_CUDA_OK;
}

int64_t cdSparseConvKernelVolume(const cdSparseConvGeometry* g) {
  return g ? int64_t{g->kernel[0]} * g->kernel[1] * g->kernel[2] : 0;
}

int64_t cdSparseConvMaxOutputsPerInput(const cdSparseConvGeometry* g) {
  if (!g) return 0;
  if (g->subm) return 1;
  int64_t p = 1;
  for (int a = 0; a < 3; ++a)
    p *= std::min<int64_t>(g->kernel[a], int64_t{g->kernel[a] - 1} * g->dilation[a] / std::max(g->stride[a], 1) + 1);
  return p;
}

size_t cdSparseConvRulebookWorkspaceSize(const cdSparseConvGeometry* g, int64_t max_inputs) {
  if (check_geometry(g) != CD_CUDA_OK || check_sizes(g, max_inputs) != CD_CUDA_OK) return 0;
  Carver carver;
  if (g->subm) {
    const uint64_t cap = hash_capacity(max_inputs);
    carver.take<unsigned long long>(cap);
    carver.take<int32_t>(cap);
  } else {
    const Grid grid = make_grid(g);
    RegularBuffers b{};
    if (regular_buffers(regular_plan(g, grid, max_inputs), carver, b, nullptr) != CD_CUDA_OK) return 0;
  }
  ok();
  return carver.used();
}

cdCudaStatus cdSparseConvRulebook(const cdSparseConvGeometry* g, const int32_t* d_indices, int64_t n,
                                  int64_t max_outputs, int32_t* d_out_indices, int32_t* d_neighbors,
                                  int32_t* d_num_out, int32_t* d_error, void* d_workspace, size_t workspace_size,
                                  cudaStream_t stream) {
  CD_TRY(check_geometry(g));
  CD_TRY(check_sizes(g, n));
  if (max_outputs < 0) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "max_outputs must be >= 0");
  if (n > 0 && (!d_indices || !d_neighbors))
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "sparse conv rulebook: d_indices and d_neighbors are required");
  const int64_t K = cdSparseConvKernelVolume(g);
  const Grid grid = make_grid(g);

  if (g->subm) {
    if (max_outputs < n)
      return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "submanifold conv: max_outputs (" + std::to_string(max_outputs) +
                                                    ") must be >= the number of inputs (" + std::to_string(n) + ")");
    if (d_num_out) {
      const int32_t count = static_cast<int32_t>(n);
      // a kernel, not a host-to-device copy: keeps the call capturable and free of pageable memory
      fill_i32<<<1, 1, 0, stream>>>(d_num_out, 1, count);
    }
    if (d_out_indices && n > 0)
      CD_TRY_CUDA(cudaMemcpyAsync(d_out_indices, d_indices, static_cast<size_t>(n) * 4 * sizeof(int32_t),
                                  cudaMemcpyDeviceToDevice, stream),
                  "copying the submanifold output indices");
    if (n == 0) {
      CD_TRY_CUDA(cudaGetLastError(), "sparse conv rulebook launch");
      return ok();
    }
    const uint64_t cap = hash_capacity(n);
    Carver carver(d_workspace, workspace_size);
    auto* keys = carver.take<unsigned long long>(cap);
    auto* vals = carver.take<int32_t>(cap);
    if (!d_workspace || !carver.fits())
      return fail(CD_CUDA_ERR_WORKSPACE, "sparse conv rulebook: workspace of " + std::to_string(workspace_size) +
                                             " bytes, needs " + std::to_string(carver.used()));
    CD_TRY_CUDA(cudaMemsetAsync(keys, 0xFF, cap * sizeof(unsigned long long), stream), "clearing the hash table");
    fill_i32<<<blocks_for(static_cast<int64_t>(cap)), kThreads, 0, stream>>>(vals, static_cast<int64_t>(cap),
                                                                             std::numeric_limits<int32_t>::max());
    hash_insert<<<blocks_for(n), kThreads, 0, stream>>>(d_indices, n, grid, keys, vals, cap - 1, d_error);
    subm_neighbors<<<blocks_for(n * K), kThreads, 0, stream>>>(d_indices, n, grid, K, keys, vals, cap - 1,
                                                              d_neighbors);
    CD_TRY_CUDA(cudaGetLastError(), "submanifold rulebook kernels");
    return ok();
  }

  // regular / strided
  const RegularPlan plan = regular_plan(g, grid, n);
  Carver carver(d_workspace, workspace_size);
  RegularBuffers b{};
  CD_TRY(regular_buffers(plan, carver, b, stream));
  if (!d_workspace || !carver.fits())
    return fail(CD_CUDA_ERR_WORKSPACE, "sparse conv rulebook: workspace of " + std::to_string(workspace_size) +
                                           " bytes, needs " + std::to_string(carver.used()));
  if (plan.total > 0 && !d_out_indices)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "regular sparse conv rulebook: d_out_indices is required");
  if (plan.total == 0) {
    if (d_num_out) fill_i32<<<1, 1, 0, stream>>>(d_num_out, 1, 0);
    CD_TRY_CUDA(cudaGetLastError(), "sparse conv rulebook launch");
    return ok();
  }
  const int items = static_cast<int>(plan.total);
  regular_emit<<<blocks_for(n), kThreads, 0, stream>>>(d_indices, n, grid, K, cdSparseConvMaxOutputsPerInput(g),
                                                       plan.sentinel, b.keys_in, b.vals_in, d_error);
  CD_TRY_CUDA(cudaGetLastError(), "regular_emit launch");
  size_t temp_bytes = b.temp_bytes;
  CD_TRY_CUDA(cub::DeviceRadixSort::SortPairs(b.temp, temp_bytes, b.keys_in, b.keys_out, b.vals_in, b.vals_out, items,
                                              0, plan.end_bit, stream),
              "cub::DeviceRadixSort::SortPairs");
  head_flags<<<blocks_for(plan.total), kThreads, 0, stream>>>(b.keys_out, plan.total, plan.sentinel, b.head);
  temp_bytes = b.temp_bytes;
  CD_TRY_CUDA(cub::DeviceScan::InclusiveSum(b.temp, temp_bytes, b.head, b.pos, items, stream),
              "cub::DeviceScan::InclusiveSum");
  finish_count<<<1, 1, 0, stream>>>(b.pos, plan.total, max_outputs, d_num_out, b.count, d_error);
  write_outputs<<<blocks_for(plan.total), kThreads, 0, stream>>>(b.keys_out, b.head, b.pos, plan.total, grid, K,
                                                                 max_outputs, d_out_indices, d_neighbors);
  write_pairs<<<blocks_for(plan.total), kThreads, 0, stream>>>(b.keys_out, b.vals_out, b.pos, plan.total,
                                                               plan.sentinel, K, max_outputs, d_neighbors, d_error);
  CD_TRY_CUDA(cudaGetLastError(), "regular rulebook kernels");
  return ok();
}

}  // extern "C"
