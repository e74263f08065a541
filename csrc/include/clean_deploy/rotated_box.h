// rotated_box.h: BEV geometry of rotated boxes shared by the CPU kernel (cpu/redundancy.cpp) and the
// CUDA kernel (cuda/src/redundancy.cu), so both eliminate with literally the same arithmetic:
// double-precision corners and Sutherland-Hodgman clipping (as clean_deploy/geometry/nms_kernel.py).
// Boxes are (x, y, z, dx, dy, dz, heading); only x, y, dx, dy and heading are read.
#pragma once

#include <cmath>

#include "clean_deploy/host_device.h"

namespace clean_deploy {

// The four BEV corners of box `b`, counter-clockwise.
CLEAN_DEPLOY_HD inline void box_corners(const double* b, double out[4][2]) {
  const double c = cos(b[6]), s = sin(b[6]);
  const double hl = b[3] / 2.0, hw = b[4] / 2.0;
  const double sx[4] = {1.0, -1.0, -1.0, 1.0};
  const double sy[4] = {1.0, 1.0, -1.0, -1.0};
  for (int k = 0; k < 4; ++k) {
    const double lx = sx[k] * hl, ly = sy[k] * hw;
    out[k][0] = b[0] + lx * c - ly * s;
    out[k][1] = b[1] + lx * s + ly * c;
  }
}

// Area of the convex quad `subject` (ccw) clipped by the convex ccw quad `clip`.
CLEAN_DEPLOY_HD inline double clip_area(const double subject[4][2], const double clip[4][2]) {
  double a[16][2], b[16][2];
  int m = 4;
  for (int i = 0; i < 4; ++i) {
    a[i][0] = subject[i][0];
    a[i][1] = subject[i][1];
  }
  for (int e = 0; e < 4; ++e) {
    const double ax = clip[e][0], ay = clip[e][1];
    const double bx = clip[(e + 1) % 4][0], by = clip[(e + 1) % 4][1];
    int k = 0;
    for (int i = 0; i < m; ++i) {
      const double px = a[i][0], py = a[i][1];
      const double qx = a[(i + 1) % m][0], qy = a[(i + 1) % m][1];
      const double dp = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
      const double dq = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax);
      if (dp >= 0) {
        b[k][0] = px;
        b[k][1] = py;
        ++k;
      }
      if ((dp >= 0) != (dq >= 0)) {
        const double t = dp / (dp - dq);
        b[k][0] = px + t * (qx - px);
        b[k][1] = py + t * (qy - py);
        ++k;
      }
    }
    m = k;
    if (m == 0) return 0.0;
    for (int i = 0; i < m; ++i) {
      a[i][0] = b[i][0];
      a[i][1] = b[i][1];
    }
  }
  double area = 0.0;
  for (int i = 0; i < m; ++i) {
    const int j = (i + 1) % m;
    area += a[i][0] * a[j][1] - a[j][0] * a[i][1];
  }
  return fabs(area) / 2.0;
}

// BEV IoU of boxes `a` and `b` given their corners (from box_corners).
CLEAN_DEPLOY_HD inline double iou_from_corners(const double* a, const double* b, const double ca[4][2],
                                               const double cb[4][2]) {
  const double inter = clip_area(ca, cb);
  const double uni = a[3] * a[4] + b[3] * b[4] - inter;
  return uni > 0 ? inter / uni : 0.0;
}

}  // namespace clean_deploy
