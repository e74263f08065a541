// box_decode.h: per-candidate decode of a dense detection head's raw outputs for
// clean_deploy::IoUAwareRedundancyElimination (docs/custom_ops.md, steps 1 and 2), the one copy of
// the arithmetic shared by the CPU kernel (cpu/redundancy.cpp: decode_anchor_frame,
// decode_center_frame) and the CUDA kernels (cuda/src/redundancy.cu: anchor_decode, center_sigmoid,
// center_peaks, center_decode). Operation order, float32 precision, the exp clamp, atan2, the
// direction-bin rule and limit_period live here only; the callers loop, sort and rescore.
//
// Float arithmetic must not be contracted into FMAs: the CPU kernel is built without -mfma and
// cuda/src/redundancy.cu with --fmad=false. The transcendental functions are the only per-target
// part (exp_f, sin_f, cos_f, atan2_f): on the host (the CPU kernel, and the CPU emulation of the
// CUDA kernels in csrc/cuda/tests/emu) they are the C library's float functions, which the CPU
// kernel's results are defined by; on the device (__CUDA_ARCH__) they are evaluated in double and
// rounded to float, which agrees with glibc's float functions except in ~1-ulp corner cases.
#pragma once

#include <cmath>
#include <cstdint>

#include "clean_deploy/host_device.h"

namespace clean_deploy {
namespace box_decode {

// exp() of the log-size residuals is clamped at exp(5) (as the PyTorch decoders).
constexpr float kMaxLogRatio = 5.0f;

// ---- float primitives --------------------------------------------------------------------------

CLEAN_DEPLOY_HD inline float min_f(float a, float b) { return (b < a) ? b : a; }  // std::min
CLEAN_DEPLOY_HD inline float max_f(float a, float b) { return (a < b) ? b : a; }  // std::max

CLEAN_DEPLOY_HD inline float exp_f(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<float>(::exp(static_cast<double>(x)));
#else
  return std::exp(x);
#endif
}

CLEAN_DEPLOY_HD inline float sin_f(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<float>(::sin(static_cast<double>(x)));
#else
  return std::sin(x);
#endif
}

CLEAN_DEPLOY_HD inline float cos_f(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<float>(::cos(static_cast<double>(x)));
#else
  return std::cos(x);
#endif
}

CLEAN_DEPLOY_HD inline float atan2_f(float y, float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<float>(::atan2(static_cast<double>(y), static_cast<double>(x)));
#else
  return std::atan2(y, x);
#endif
}

// sqrt and floor are exact (correctly rounded) on both targets.
CLEAN_DEPLOY_HD inline float sqrt_f(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);
#else
  return std::sqrt(x);
#endif
}

CLEAN_DEPLOY_HD inline float floor_f(float x) {
#if defined(__CUDA_ARCH__)
  return floorf(x);
#else
  return std::floor(x);
#endif
}

CLEAN_DEPLOY_HD inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }

// exp of a log-size residual, clamped
CLEAN_DEPLOY_HD inline float exp_size(float t) { return exp_f(min_f(t, kMaxLogRatio)); }

// ---- anchor head -------------------------------------------------------------------------------

// Class of one anchor: argmax of its logits (the first on ties); *best = the winning logit.
CLEAN_DEPLOY_HD inline int32_t best_class(const float* logit, int num_classes, float* best) {
  int32_t label = 0;
  float b = logit[0];
  for (int c = 1; c < num_classes; ++c) {
    if (logit[c] > b) {
      b = logit[c];
      label = c;
    }
  }
  *best = b;
  return label;
}

// score^(1-b) * iou^b <= max(score, iou): a candidate below the threshold cannot survive rescoring.
CLEAN_DEPLOY_HD inline bool cannot_reach(float score, bool has_iou, float iou, float score_thresh) {
  return (has_iou ? max_f(score, iou) : score) < score_thresh;
}

// The anchor decode's settings (the node's attributes).
struct AnchorCoding {
  bool code_sincos;  // box code [x y z l w h cos sin] (8) instead of [x y z l w h yaw] (7)
  bool use_dir;
  int num_dir_bins;
  float dir_offset;
  float dir_limit_offset;
};

// Angular width of one direction bin.
CLEAN_DEPLOY_HD inline float dir_period(int num_dir_bins) {
  return 2.0f * static_cast<float>(M_PI) / static_cast<float>(num_dir_bins);
}

// Direction bin: argmax of the direction logits (the first on ties).
CLEAN_DEPLOY_HD inline int direction_bin(const float* d, int num_dir_bins) {
  int bin = 0;
  for (int j = 1; j < num_dir_bins; ++j)
    if (d[j] > d[bin]) bin = j;
  return bin;
}

// limit_period(v, offset, period) = v - floor(v / period + offset) * period
CLEAN_DEPLOY_HD inline float limit_period(float v, float offset, float period) {
  return v - floor_f(v / period + offset) * period;
}

// Yaw folded into the bin's half-turn: limit_period(yaw - dir_offset) + dir_offset + period * bin.
CLEAN_DEPLOY_HD inline float apply_direction(float yaw, int bin, const AnchorCoding& c) {
  const float period = dir_period(c.num_dir_bins);
  const float rot = limit_period(yaw - c.dir_offset, c.dir_limit_offset, period);
  return (rot + c.dir_offset) + period * static_cast<float>(bin);
}

// Residual box decode of one anchor: t = its box code (7 or 8 floats), a = the anchor (x y z l w h
// yaw), d = its direction logits (num_dir_bins floats) or nullptr; writes b = x y z l w h yaw.
CLEAN_DEPLOY_HD inline void decode_anchor_box(const float* t, const float* a, const float* d, const AnchorCoding& c,
                                              float b[7]) {
  const float diag = sqrt_f(a[3] * a[3] + a[4] * a[4]);
  b[0] = t[0] * diag + a[0];
  b[1] = t[1] * diag + a[1];
  b[2] = t[2] * a[5] + a[2];
  b[3] = exp_size(t[3]) * a[3];
  b[4] = exp_size(t[4]) * a[4];
  b[5] = exp_size(t[5]) * a[5];
  if (c.code_sincos) {
    b[6] = atan2_f(t[7] + sin_f(a[6]), t[6] + cos_f(a[6]));
  } else {
    b[6] = t[6] + a[6];
  }
  if (c.use_dir && d) b[6] = apply_direction(b[6], direction_bin(d, c.num_dir_bins), c);
}

// ---- center head -------------------------------------------------------------------------------

// Peak test of cell (y, x) of one class's sigmoid heatmap `s` [height, width]: its value where it
// equals the 3x3 max (max-pool, stride 1, -inf padding), else 0.
CLEAN_DEPLOY_HD inline float center_peak(const float* s, int64_t y, int64_t x, int64_t height, int64_t width) {
  float m = -INFINITY;
  for (int64_t dy = -1; dy <= 1; ++dy) {
    const int64_t yy = y + dy;
    if (yy < 0 || yy >= height) continue;
    for (int64_t dx = -1; dx <= 1; ++dx) {
      const int64_t xx = x + dx;
      if (xx < 0 || xx >= width) continue;
      m = max_f(m, s[yy * width + xx]);
    }
  }
  const float v = s[y * width + x];
  return (m == v) ? v : 0.0f;
}

// Box of the peak at cell `ind` (= y * width + x) from the regression map reg [8, height * width]
// (x offset, y offset, z, log l, log w, log h, cos, sin): cell + offset scaled to metres.
CLEAN_DEPLOY_HD inline void decode_center_box(const float* reg, int64_t hw, int64_t ind, int64_t width,
                                              float cell_x, float cell_y, float x_min, float y_min, float b[7]) {
  const float xs = static_cast<float>(ind % width) + reg[0 * hw + ind];
  const float ys = static_cast<float>(ind / width) + reg[1 * hw + ind];
  b[0] = xs * cell_x + x_min;
  b[1] = ys * cell_y + y_min;
  b[2] = reg[2 * hw + ind];
  b[3] = exp_size(reg[3 * hw + ind]);
  b[4] = exp_size(reg[4 * hw + ind]);
  b[5] = exp_size(reg[5 * hw + ind]);
  b[6] = atan2_f(reg[7 * hw + ind], reg[6 * hw + ind]);
}

}  // namespace box_decode
}  // namespace clean_deploy
