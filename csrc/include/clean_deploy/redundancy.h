// clean_deploy/redundancy.h: CPU kernel of clean_deploy::IoUAwareRedundancyElimination.
//
// Decodes one frame of a dense head's raw outputs (anchor head or CenterPoint-style center head),
// rescales each candidate's score with its predicted IoU (score^(1-b) * iou^b), drops low-quality
// candidates and runs the quality-ordered greedy elimination (class-aware NMS thresholds plus a
// cross-class threshold) on exact rotated BEV IoUs in double precision. The semantics are those of
// docs/custom_ops.md and of clean_deploy.models.redundancy / clean_deploy.models.postprocess.
// The per-candidate decode arithmetic is clean_deploy/box_decode.h, shared with the CUDA kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace clean_deploy {

enum class HeadType { kAnchor, kCenter };

struct DecodeParams {
  HeadType head = HeadType::kAnchor;
  int num_classes = 3;
  // anchor head
  bool code_sincos = false;
  bool use_dir = true;
  int num_dir_bins = 2;
  float dir_offset = 0.78539f;
  float dir_limit_offset = 0.0f;
  // center head
  int top_k = 500;
  float pc_range[6] = {0, 0, 0, 0, 0, 0};
  float cell_size[2] = {0, 0};
};

struct EliminationParams {
  std::vector<float> beta;        // per class
  std::vector<float> min_iou;     // per class
  std::vector<float> nms_thresh;  // per class
  float score_thresh = 0.1f;
  float cross_class_thresh = 1.0f;
  int pre_max = 1000;
  int max_output = 100;
};

// The decoded candidates of one frame, in candidate-index order.
struct Candidates {
  std::vector<float> boxes;  // n * 7: x y z l w h yaw
  std::vector<float> scores;
  std::vector<float> iou;  // empty when the head has no IoU branch
  std::vector<int32_t> labels;
  std::vector<int64_t> index;  // candidate index (anchor index / top-k position), the tie-breaker
  int64_t size() const { return static_cast<int64_t>(scores.size()); }
};

// Anchor head, one frame. cls [K, C] logits, box [K, code] (code 7 or 8), dir [K, bins] (or
// nullptr), iou [K] logits (or nullptr), anchors [K, 7]. Candidates that cannot reach
// `score_thresh` after rescoring (max(score, iou) < score_thresh) are skipped.
Candidates decode_anchor_frame(const float* cls, const float* box, const float* dir, const float* iou,
                               const float* anchors, int64_t num_anchors, int code_size,
                               const DecodeParams& p, float score_thresh);

// Center head, one frame. hm [C, H, W] logits, reg [8, H, W], iou [H, W] logits (or nullptr).
Candidates decode_center_frame(const float* hm, const float* reg, const float* iou, int64_t height, int64_t width,
                               const DecodeParams& p);

// Rescoring + greedy elimination. Writes up to max_output rows (boxes [M,7], scores [M], labels [M]);
// the caller zero-fills the padding (labels -1). Returns the number of valid rows.
int64_t eliminate(const Candidates& c, const EliminationParams& e, float* out_boxes, float* out_scores,
                  int32_t* out_labels);

// Exact BEV IoU of two boxes (x y z l w h yaw), double precision (exposed for tests).
double rotated_iou_bev(const double* a, const double* b);

}  // namespace clean_deploy
