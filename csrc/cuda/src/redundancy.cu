// GPU kernel of clean_deploy::IoUAwareRedundancyElimination, the analogue of csrc/cpu/redundancy.cpp:
// decode (anchor or center head) -> IoU-aware rescoring -> stable quality sort (CUB) -> greedy
// elimination with 64-bit suppression masks and one sequential scan per frame.
//
// Same results as the CPU kernel, not just close ones: the per-candidate decode is the CPU kernel's
// own code (clean_deploy/box_decode.h, shared), this file is compiled with --fmad=false (the CPU
// kernel is built without FMA contraction), the rescoring keeps the CPU's operation order, and exp /
// pow / sin / cos / atan2 of floats are evaluated in double and rounded to float (so they agree with
// glibc's float functions except in ~1-ulp corner cases). The IoU is the same double-precision
// Sutherland-Hodgman clipping (clean_deploy/rotated_box.h, shared). The stable descending radix sort keeps equal
// qualities in candidate order, the CPU kernel's tie-break, and the scan walks candidates in that
// order exactly as the CPU's greedy loop does.
#include <cub/cub.cuh>

#include <algorithm>
#include <cmath>
#include <string>

#include "clean_deploy/box_decode.h"
#include "clean_deploy/rotated_box.h"
#include "common.h"

namespace clean_deploy {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxPreNms = 32768;  // mask memory grows with the square of the candidates kept

using box_decode::max_f;
using box_decode::sigmoid;

__device__ __forceinline__ float pow_f(float x, float y) {
  return static_cast<float>(pow(static_cast<double>(x), static_cast<double>(y)));
}

// Rescoring and the candidate filter of the CPU's eliminate(); invalid candidates get -inf keys
// (valid qualities are >= 0) so they sort last.
__device__ __forceinline__ float quality(const cdRedundancyParams& p, bool has_iou, float score, float iou,
                                         int32_t label, bool* valid) {
  float q = score;
  if (has_iou) {
    const float b = p.beta[label];
    q = pow_f(max_f(score, 0.0f), 1.0f - b) * pow_f(max_f(iou, 0.0f), b);
  }
  *valid = q >= p.score_thresh && (!has_iou || iou >= p.min_iou[label]);
  return q;
}

__global__ void anchor_decode(cdRedundancyParams p, int64_t K, const float* __restrict__ cls,
                              const float* __restrict__ box, const float* __restrict__ dir,
                              const float* __restrict__ iou, const float* __restrict__ anchors,
                              float* __restrict__ cand_boxes, int32_t* __restrict__ cand_labels,
                              float* __restrict__ keys, int32_t* __restrict__ ids, int32_t* count) {
  const int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (k >= K) return;
  const int nc = p.num_classes;
  float best;
  const int32_t label = box_decode::best_class(cls + k * nc, nc, &best);
  const float score = sigmoid(best);
  const float q_iou = iou ? sigmoid(iou[k]) : 0.0f;
  ids[k] = static_cast<int32_t>(k);
  cand_labels[k] = label;
  // the CPU decoder drops these before rescoring
  if (box_decode::cannot_reach(score, iou != nullptr, q_iou, p.score_thresh)) {
    keys[k] = -INFINITY;
    return;
  }
  const box_decode::AnchorCoding coding{p.code_sincos != 0, p.use_dir != 0, p.num_dir_bins, p.dir_offset,
                                        p.dir_limit_offset};
  float b[7];
  box_decode::decode_anchor_box(box + k * p.code_size, anchors + k * 7, dir ? dir + k * p.num_dir_bins : nullptr,
                                coding, b);
  for (int j = 0; j < 7; ++j) cand_boxes[k * 7 + j] = b[j];
  bool valid = false;
  const float q = quality(p, iou != nullptr, score, q_iou, label, &valid);
  keys[k] = valid ? q : -INFINITY;
  if (valid) atomicAdd(count, 1);
}

__global__ void center_sigmoid(const float* __restrict__ hm, int64_t n, float* __restrict__ s) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) s[i] = sigmoid(hm[i]);
}

// 3x3 max-pool (stride 1, -inf padding) peak test; keys = peak value, ids = flat index.
__global__ void center_peaks(const float* __restrict__ s, int64_t C, int64_t H, int64_t W, float* __restrict__ keys,
                             int32_t* __restrict__ ids) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= C * H * W) return;
  const int64_t hw = H * W, c = i / hw, y = (i % hw) / W, x = i % W;
  keys[i] = box_decode::center_peak(s + c * hw, y, x, H, W);
  ids[i] = static_cast<int32_t>(i);
}

// Candidate r of the top-k (sorted peaks): decode, rescore.
__global__ void center_decode(cdRedundancyParams p, int64_t kk, int64_t H, int64_t W,
                              const float* __restrict__ peak_sorted, const int32_t* __restrict__ flat_sorted,
                              const float* __restrict__ reg, const float* __restrict__ iou,
                              float* __restrict__ cand_boxes, int32_t* __restrict__ cand_labels,
                              float* __restrict__ keys, int32_t* __restrict__ ids, int32_t* count) {
  const int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (r >= kk) return;
  const int64_t hw = H * W;
  const int64_t flat = flat_sorted[r];
  const int32_t label = static_cast<int32_t>(flat / hw);
  const int64_t ind = flat % hw;
  float b[7];
  box_decode::decode_center_box(reg, hw, ind, W, p.cell_size[0], p.cell_size[1], p.pc_range[0], p.pc_range[1], b);
  for (int j = 0; j < 7; ++j) cand_boxes[r * 7 + j] = b[j];
  cand_labels[r] = label;
  ids[r] = static_cast<int32_t>(r);
  const float score = peak_sorted[r];
  const float q_iou = iou ? sigmoid(iou[ind]) : 0.0f;
  bool valid = false;
  const float q = quality(p, iou != nullptr, score, q_iou, label, &valid);
  keys[r] = valid ? q : -INFINITY;
  if (valid) atomicAdd(count, 1);
}

struct SortedBox {  // one kept candidate in quality order, as the CPU's elimination sees it
  double box[7];
  double corners[4][2];
  double radius;
  int32_t label;
};

__global__ void prepare_sorted(const int32_t* __restrict__ sorted_ids, const float* __restrict__ cand_boxes,
                               const int32_t* __restrict__ cand_labels, const int32_t* __restrict__ count,
                               int64_t pre_cap, int32_t pre_max, SortedBox* __restrict__ out, int32_t* m_out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int32_t m = min(*count, pre_max);
  if (i == 0) *m_out = m;
  if (i >= pre_cap || i >= m) return;
  const int32_t src = sorted_ids[i];
  SortedBox sb;
  for (int j = 0; j < 7; ++j) sb.box[j] = static_cast<double>(cand_boxes[src * 7 + j]);
  box_corners(sb.box, sb.corners);
  sb.radius = 0.5 * sqrt(sb.box[3] * sb.box[3] + sb.box[4] * sb.box[4]);
  sb.label = cand_labels[src];
  out[i] = sb;
}

// mask[i * col_blocks + cb] bit jj: box i (if alive) removes box j = cb * 64 + jj (j > i).
__global__ void __launch_bounds__(64)
    suppression_mask(cdRedundancyParams p, const SortedBox* __restrict__ boxes, const int32_t* __restrict__ m_ptr,
                     int64_t col_blocks, unsigned long long* __restrict__ mask) {
  const int64_t rb = blockIdx.y, cb = blockIdx.x;
  if (cb < rb) return;  // the scan never reads words left of the diagonal
  const int64_t m = *m_ptr;
  if (rb * 64 >= m) return;
  __shared__ SortedBox cols[64];
  const int64_t j0 = cb * 64;
  if (j0 + threadIdx.x < m) cols[threadIdx.x] = boxes[j0 + threadIdx.x];
  __syncthreads();
  const int64_t i = rb * 64 + threadIdx.x;
  if (i >= m) return;
  const SortedBox bi = boxes[i];
  unsigned long long bits = 0;
  const int64_t jn = (m - j0) < 64 ? (m - j0) : 64;
  for (int64_t jj = 0; jj < jn; ++jj) {
    const int64_t j = j0 + jj;
    if (j <= i) continue;
    const SortedBox& bj = cols[jj];
    const double thr = (bi.label == bj.label) ? static_cast<double>(p.nms_thresh[bi.label])
                                              : static_cast<double>(p.cross_class_thresh);
    if (thr >= 1.0) continue;
    const double dx = bi.box[0] - bj.box[0], dy = bi.box[1] - bj.box[1], r = bi.radius + bj.radius;
    if (dx * dx + dy * dy > r * r) continue;
    if (iou_from_corners(bi.box, bj.box, bi.corners, bj.corners) > thr) bits |= 1ull << jj;
  }
  mask[i * col_blocks + cb] = bits;
}

__global__ void fill_outputs(float* boxes, float* scores, int32_t* labels, int64_t rows) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= rows) return;
  for (int j = 0; j < 7; ++j) boxes[i * 7 + j] = 0.0f;
  scores[i] = 0.0f;
  labels[i] = -1;
}

// One warp walks the candidates in quality order (the CPU's greedy loop): a candidate not yet
// removed is kept and ORs its mask row into the removed set.
__global__ void greedy_scan(const unsigned long long* __restrict__ mask, const int32_t* __restrict__ m_ptr,
                            int64_t col_blocks, const int32_t* __restrict__ sorted_ids,
                            const float* __restrict__ sorted_keys, const float* __restrict__ cand_boxes,
                            const int32_t* __restrict__ cand_labels, int32_t max_output, float* out_boxes,
                            float* out_scores, int32_t* out_labels, int32_t* valid_count) {
  extern __shared__ unsigned long long removed[];
  const int lane = threadIdx.x;
  const int64_t m = *m_ptr;
  for (int64_t w = lane; w < col_blocks; w += 32) removed[w] = 0ull;
  __syncwarp();
  int32_t written = 0;
  for (int64_t i = 0; i < m && written < max_output; ++i) {
    const bool alive = !((removed[i / 64] >> (i % 64)) & 1ull);
    __syncwarp();
    if (!alive) continue;
    if (lane == 0) {
      const int32_t src = sorted_ids[i];
      for (int j = 0; j < 7; ++j) out_boxes[written * 7 + j] = cand_boxes[src * 7 + j];
      out_scores[written] = sorted_keys[i];
      out_labels[written] = cand_labels[src];
    }
    ++written;
    for (int64_t w = i / 64 + lane; w < col_blocks; w += 32) removed[w] |= mask[i * col_blocks + w];
    __syncwarp();
  }
  if (lane == 0) *valid_count = written;
}

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>(ceil_div(std::max<int64_t>(n, 1), kThreads)); }

// Sizes of one frame's problem.
struct Plan {
  int64_t sort_items = 0;  // largest sort (anchors, or C*H*W peaks for a center head)
  int64_t candidates = 0;  // candidates after decode (anchors, or the top-k)
  int64_t pre_cap = 0;     // min(pre_max, candidates)
  int64_t col_blocks = 0;  // ceil(pre_cap / 64)
};

struct Buffers {
  float *cand_boxes, *keys_in, *keys_out, *scratch;
  int32_t *cand_labels, *ids_in, *ids_out, *count, *m;
  SortedBox* sorted;
  unsigned long long* mask;
  void* temp;
  size_t temp_bytes;
};

cdCudaStatus check_params(const cdRedundancyParams* p, int64_t num_anchors, int64_t height, int64_t width) {
  if (!p) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: params is NULL");
  if (p->head_type != CD_HEAD_ANCHOR && p->head_type != CD_HEAD_CENTER)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: head_type must be anchor (0) or center (1)");
  if (p->num_classes < 1 || p->num_classes > CD_RE_MAX_CLASSES)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: num_classes must be in [1, " +
                                                  std::to_string(CD_RE_MAX_CLASSES) + "], got " +
                                                  std::to_string(p->num_classes));
  if (p->pre_max < 0 || p->max_output < 0)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: pre_max and max_output must be >= 0");
  if (p->head_type == CD_HEAD_ANCHOR) {
    if (num_anchors < 0 || num_anchors > 0x7FFFFFFF)
      return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: bad number of anchors");
    if (p->code_size != (p->code_sincos ? 8 : 7))
      return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: code_size must be 7 (8 with code_sincos)");
    if (p->use_dir && p->num_dir_bins < 1)
      return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: num_dir_bins must be >= 1");
  } else {
    if (height < 1 || width < 1 || height * width * p->num_classes > 0x7FFFFFFF)
      return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: bad heatmap size");
    if (p->top_k < 0) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: top_k must be >= 0");
  }
  return CD_CUDA_OK;
}

Plan make_plan(const cdRedundancyParams* p, int64_t num_anchors, int64_t height, int64_t width) {
  Plan pl;
  if (p->head_type == CD_HEAD_ANCHOR) {
    pl.sort_items = num_anchors;
    pl.candidates = num_anchors;
  } else {
    pl.sort_items = int64_t{p->num_classes} * height * width;
    pl.candidates = std::min<int64_t>(p->top_k, pl.sort_items);
  }
  pl.pre_cap = std::min<int64_t>(p->pre_max, pl.candidates);
  pl.col_blocks = ceil_div(pl.pre_cap, 64);
  return pl;
}

cdCudaStatus carve(const Plan& pl, Carver& c, Buffers& b) {
  const int items = static_cast<int>(std::max<int64_t>(pl.sort_items, 1));
  size_t sort_bytes = 0;
  CD_TRY_CUDA(cub::DeviceRadixSort::SortPairsDescending(nullptr, sort_bytes, static_cast<const float*>(nullptr),
                                                        static_cast<float*>(nullptr),
                                                        static_cast<const int32_t*>(nullptr),
                                                        static_cast<int32_t*>(nullptr), items),
              "cub::DeviceRadixSort::SortPairsDescending (size query)");
  const int64_t n = std::max<int64_t>(pl.sort_items, 1);
  b.cand_boxes = c.take<float>(std::max<int64_t>(pl.candidates, 1) * 7);
  b.cand_labels = c.take<int32_t>(std::max<int64_t>(pl.candidates, 1));
  b.keys_in = c.take<float>(n);
  b.keys_out = c.take<float>(n);
  b.scratch = c.take<float>(n);  // center head: sigmoid map, then the sorted peaks
  b.ids_in = c.take<int32_t>(n);
  b.ids_out = c.take<int32_t>(n);
  b.count = c.take<int32_t>(1);
  b.m = c.take<int32_t>(1);
  b.sorted = c.take<SortedBox>(std::max<int64_t>(pl.pre_cap, 1));
  b.mask = c.take<unsigned long long>(std::max<int64_t>(pl.pre_cap * pl.col_blocks, 1));
  b.temp_bytes = std::max<size_t>(sort_bytes, 1);
  b.temp = c.take_bytes(b.temp_bytes);
  return CD_CUDA_OK;
}

}  // namespace

}  // namespace cuda
}  // namespace clean_deploy

using namespace clean_deploy::cuda;

extern "C" {

int64_t cdRedundancyNumCandidates(const cdRedundancyParams* p, int64_t num_anchors, int64_t height, int64_t width) {
  if (!p) return 0;
  return make_plan(p, num_anchors, height, width).candidates;
}

size_t cdRedundancyWorkspaceSize(const cdRedundancyParams* p, int64_t num_anchors, int64_t height, int64_t width) {
  if (check_params(p, num_anchors, height, width) != CD_CUDA_OK) return 0;
  const Plan pl = make_plan(p, num_anchors, height, width);
  Carver c;
  Buffers b{};
  if (carve(pl, c, b) != CD_CUDA_OK) return 0;
  ok();
  return c.used();
}

cdCudaStatus cdRedundancyForward(const cdRedundancyParams* p, int32_t batch, int64_t num_anchors, int64_t height,
                                 int64_t width, const float* d_cls, const float* d_box, const float* d_dir,
                                 const float* d_iou, const float* d_anchors, float* d_boxes, float* d_scores,
                                 int32_t* d_labels, int32_t* d_valid_count, void* d_workspace, size_t workspace_size,
                                 cudaStream_t stream) {
  CD_TRY(check_params(p, num_anchors, height, width));
  if (batch < 0) return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: negative batch");
  if (batch == 0) return ok();
  const bool anchor = p->head_type == CD_HEAD_ANCHOR;
  if (!d_cls || !d_box || (anchor && !d_anchors) || !d_boxes || !d_scores || !d_labels || !d_valid_count)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: NULL device pointer");
  const Plan pl = make_plan(p, num_anchors, height, width);
  if (pl.pre_cap > kMaxPreNms)
    return fail(CD_CUDA_ERR_INVALID_ARGUMENT, "redundancy elimination: min(pre_max, candidates) = " +
                                                  std::to_string(pl.pre_cap) + " exceeds the GPU kernel's limit of " +
                                                  std::to_string(kMaxPreNms) + " (suppression masks grow quadratically)");
  Carver c(d_workspace, workspace_size);
  Buffers b{};
  CD_TRY(carve(pl, c, b));
  if (!d_workspace || !c.fits())
    return fail(CD_CUDA_ERR_WORKSPACE, "redundancy elimination: workspace of " + std::to_string(workspace_size) +
                                           " bytes, needs " + std::to_string(c.used()));
  const int64_t M = p->max_output, C = p->num_classes;
  const int64_t hw = height * width;
  fill_outputs<<<blocks_for(batch * M), kThreads, 0, stream>>>(d_boxes, d_scores, d_labels, batch * M);
  CD_TRY_CUDA(cudaGetLastError(), "fill_outputs launch");

  for (int32_t f = 0; f < batch; ++f) {
    float* out_boxes = d_boxes + f * M * 7;
    float* out_scores = d_scores + f * M;
    int32_t* out_labels = d_labels + f * M;
    CD_TRY_CUDA(cudaMemsetAsync(b.count, 0, sizeof(int32_t), stream), "clearing the candidate count");
    int64_t ncand = pl.candidates;
    if (anchor) {
      const int64_t K = num_anchors;
      if (K > 0)
        anchor_decode<<<blocks_for(K), kThreads, 0, stream>>>(
            *p, K, d_cls + f * K * C, d_box + f * K * p->code_size,
            d_dir ? d_dir + f * K * p->num_dir_bins : nullptr, d_iou ? d_iou + f * K : nullptr, d_anchors,
            b.cand_boxes, b.cand_labels, b.keys_in, b.ids_in, b.count);
    } else if (pl.sort_items > 0 && ncand > 0) {
      const int items = static_cast<int>(pl.sort_items);
      center_sigmoid<<<blocks_for(pl.sort_items), kThreads, 0, stream>>>(d_cls + f * pl.sort_items, pl.sort_items,
                                                                         b.scratch);
      center_peaks<<<blocks_for(pl.sort_items), kThreads, 0, stream>>>(b.scratch, C, height, width, b.keys_in,
                                                                       b.ids_in);
      size_t bytes = b.temp_bytes;
      CD_TRY_CUDA(cub::DeviceRadixSort::SortPairsDescending(b.temp, bytes, b.keys_in, b.scratch, b.ids_in, b.ids_out,
                                                            items, 0, 32, stream),
                  "cub::DeviceRadixSort::SortPairsDescending (top-k peaks)");
      // b.scratch = peaks in descending order, b.ids_out = their flat indices
      center_decode<<<blocks_for(ncand), kThreads, 0, stream>>>(
          *p, ncand, height, width, b.scratch, b.ids_out, d_box + f * 8 * hw, d_iou ? d_iou + f * hw : nullptr,
          b.cand_boxes, b.cand_labels, b.keys_in, b.ids_in, b.count);
    }
    CD_TRY_CUDA(cudaGetLastError(), "decode launch");
    if (ncand > 0 && pl.pre_cap > 0) {
      size_t bytes = b.temp_bytes;
      CD_TRY_CUDA(cub::DeviceRadixSort::SortPairsDescending(b.temp, bytes, b.keys_in, b.keys_out, b.ids_in, b.ids_out,
                                                            static_cast<int>(ncand), 0, 32, stream),
                  "cub::DeviceRadixSort::SortPairsDescending (quality order)");
      prepare_sorted<<<blocks_for(pl.pre_cap), kThreads, 0, stream>>>(b.ids_out, b.cand_boxes, b.cand_labels, b.count,
                                                                      pl.pre_cap, p->pre_max, b.sorted, b.m);
      const dim3 grid(static_cast<unsigned>(pl.col_blocks), static_cast<unsigned>(pl.col_blocks));
      suppression_mask<<<grid, 64, 0, stream>>>(*p, b.sorted, b.m, pl.col_blocks, b.mask);
      greedy_scan<<<1, 32, static_cast<size_t>(pl.col_blocks) * sizeof(unsigned long long), stream>>>(
          b.mask, b.m, pl.col_blocks, b.ids_out, b.keys_out, b.cand_boxes, b.cand_labels, p->max_output, out_boxes,
          out_scores, out_labels, d_valid_count + f);
    } else {
      CD_TRY_CUDA(cudaMemsetAsync(d_valid_count + f, 0, sizeof(int32_t), stream), "clearing valid_count");
    }
    CD_TRY_CUDA(cudaGetLastError(), "redundancy elimination kernels");
  }
  return ok();
}

}  // extern "C"
