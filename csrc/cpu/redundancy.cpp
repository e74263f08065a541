// cpu/redundancy.cpp: decode + IoU-aware rescoring + greedy elimination (see redundancy.h).
//
// The arithmetic mirrors the PyTorch reference step by step (float32 decode, double IoU with the
// same Sutherland-Hodgman clipping as clean_deploy/geometry/nms_kernel.py), so the deployed box set
// is the evaluated one. The per-candidate decode (box_decode.h) and the IoU (rotated_box.h) are
// shared with the CUDA kernel (cuda/src/redundancy.cu).
#include "clean_deploy/redundancy.h"

#include "clean_deploy/box_decode.h"
#include "clean_deploy/rotated_box.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace clean_deploy {
namespace {

using box_decode::sigmoid;

void push(Candidates& c, const float* box, float score, float iou, bool has_iou, int32_t label, int64_t index) {
  c.boxes.insert(c.boxes.end(), box, box + 7);
  c.scores.push_back(score);
  if (has_iou) c.iou.push_back(iou);
  c.labels.push_back(label);
  c.index.push_back(index);
}

}  // namespace

double rotated_iou_bev(const double* a, const double* b) {
  double ca[4][2], cb[4][2];
  box_corners(a, ca);
  box_corners(b, cb);
  return iou_from_corners(a, b, ca, cb);
}

Candidates decode_anchor_frame(const float* cls, const float* box, const float* dir, const float* iou,
                               const float* anchors, int64_t num_anchors, int code_size,
                               const DecodeParams& p, float score_thresh) {
  Candidates out;
  const int nc = p.num_classes;
  const box_decode::AnchorCoding coding{p.code_sincos, p.use_dir, p.num_dir_bins, p.dir_offset, p.dir_limit_offset};
  for (int64_t k = 0; k < num_anchors; ++k) {
    float best;
    const int32_t label = box_decode::best_class(cls + k * nc, nc, &best);
    const float score = sigmoid(best);
    const float q_iou = iou ? sigmoid(iou[k]) : 0.0f;
    if (box_decode::cannot_reach(score, iou != nullptr, q_iou, score_thresh)) continue;
    float b[7];
    box_decode::decode_anchor_box(box + k * code_size, anchors + k * 7, dir ? dir + k * p.num_dir_bins : nullptr,
                                  coding, b);
    push(out, b, score, q_iou, iou != nullptr, label, k);
  }
  return out;
}

Candidates decode_center_frame(const float* hm, const float* reg, const float* iou, int64_t height, int64_t width,
                               const DecodeParams& p) {
  const int nc = p.num_classes;
  const int64_t hw = height * width, n = nc * hw;
  // sigmoid heatmap kept only at 3x3 local maxima (max-pool with -inf padding, stride 1)
  std::vector<float> s(n);
  for (int64_t i = 0; i < n; ++i) s[i] = sigmoid(hm[i]);
  std::vector<float> peak(n);
  for (int c = 0; c < nc; ++c) {
    const float* sc = s.data() + c * hw;
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) peak[c * hw + y * width + x] = box_decode::center_peak(sc, y, x, height, width);
  }
  const int64_t k = std::min<int64_t>(p.top_k, n);
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    return peak[a] > peak[b] || (peak[a] == peak[b] && a < b);
  });
  Candidates out;
  for (int64_t r = 0; r < k; ++r) {
    const int64_t flat = order[r];
    const int32_t label = static_cast<int32_t>(flat / hw);
    const int64_t ind = flat % hw;
    float b[7];
    box_decode::decode_center_box(reg, hw, ind, width, p.cell_size[0], p.cell_size[1], p.pc_range[0], p.pc_range[1], b);
    push(out, b, peak[flat], iou ? sigmoid(iou[ind]) : 0.0f, iou != nullptr, label, r);
  }
  return out;
}

int64_t eliminate(const Candidates& c, const EliminationParams& e, float* out_boxes, float* out_scores,
                  int32_t* out_labels) {
  const bool has_iou = !c.iou.empty();
  const int64_t n = c.size();
  std::vector<float> q(n);
  std::vector<int64_t> keep;
  keep.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t lab = c.labels[i];
    if (lab < 0 || lab >= static_cast<int32_t>(e.beta.size()))
      throw std::invalid_argument("IoUAwareRedundancyElimination: class label out of range of the per-class attributes");
    if (has_iou) {
      const float b = e.beta[lab];
      q[i] = std::pow(std::max(c.scores[i], 0.0f), 1.0f - b) * std::pow(std::max(c.iou[i], 0.0f), b);
    } else {
      q[i] = c.scores[i];
    }
    if (q[i] >= e.score_thresh && (!has_iou || c.iou[i] >= e.min_iou[lab])) keep.push_back(i);
  }
  // quality order; ties by candidate index (the PyTorch reference uses a stable sort)
  std::stable_sort(keep.begin(), keep.end(), [&](int64_t a, int64_t b) {
    if (q[a] != q[b]) return q[a] > q[b];
    return c.index[a] < c.index[b];
  });
  if (static_cast<int64_t>(keep.size()) > e.pre_max) keep.resize(e.pre_max);
  const int64_t m = static_cast<int64_t>(keep.size());
  std::vector<double> boxes(m * 7), radius(m);
  std::vector<double> cs(m * 8);
  for (int64_t i = 0; i < m; ++i) {
    const float* src = c.boxes.data() + keep[i] * 7;
    for (int j = 0; j < 7; ++j) boxes[i * 7 + j] = static_cast<double>(src[j]);
    box_corners(boxes.data() + i * 7, reinterpret_cast<double(*)[2]>(cs.data() + i * 8));
    radius[i] = 0.5 * std::sqrt(boxes[i * 7 + 3] * boxes[i * 7 + 3] + boxes[i * 7 + 4] * boxes[i * 7 + 4]);
  }
  std::vector<char> alive(m, 1);
  int64_t written = 0;
  for (int64_t i = 0; i < m && written < e.max_output; ++i) {
    if (!alive[i]) continue;
    const int64_t src = keep[i];
    std::copy(c.boxes.data() + src * 7, c.boxes.data() + src * 7 + 7, out_boxes + written * 7);
    out_scores[written] = q[src];
    out_labels[written] = c.labels[src];
    ++written;
    const double* bi = boxes.data() + i * 7;
    const auto* ci = reinterpret_cast<const double(*)[2]>(cs.data() + i * 8);
    for (int64_t j = i + 1; j < m; ++j) {
      if (!alive[j]) continue;
      const int32_t li = c.labels[src], lj = c.labels[keep[j]];
      const double thr = (li == lj) ? e.nms_thresh[li] : e.cross_class_thresh;
      if (thr >= 1.0) continue;
      const double* bj = boxes.data() + j * 7;
      const double dx = bi[0] - bj[0], dy = bi[1] - bj[1], r = radius[i] + radius[j];
      if (dx * dx + dy * dy > r * r) continue;
      const auto* cj = reinterpret_cast<const double(*)[2]>(cs.data() + j * 8);
      if (iou_from_corners(bi, bj, ci, cj) > thr) alive[j] = 0;
    }
  }
  return written;
}

}  // namespace clean_deploy
