// clean_deploy C++ sample: KITTI result writer (see kitti_results.h).
#include "kitti_results.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace clean_deploy {
namespace sample {

namespace {

constexpr double kPi = 3.14159265358979323846;

// clean_deploy.geometry.boxes.limit_period(offset=0.5, period=2 pi): [-pi, pi)
double limit_period(double v) { return v - std::floor(v / (2 * kPi) + 0.5) * (2 * kPi); }

// Fixed-point formatting as Python's f"{v:.{digits}f}" (correctly rounded; "-0.00" kept).
void append_fixed(std::string& s, double v, int digits) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed, digits);
  s.append(buf, res.ptr);
}

}  // namespace

std::vector<KittiObject> detections_to_kitti(const Detections& dets, const std::vector<std::string>& class_names,
                                             const Calibration& calib, ImageSize image) {
  std::vector<KittiObject> objs;
  objs.reserve(dets.size());
  for (size_t i = 0; i < dets.size(); ++i) {
    const float* bf = dets.boxes.data() + 7 * i;
    const double b[7] = {bf[0], bf[1], bf[2], bf[3], bf[4], bf[5], bf[6]};  // x y z l w h yaw
    const double x = b[0], y = b[1], z = b[2], l = b[3], w = b[4], h = b[5], yaw = b[6];
    KittiObject o;
    o.type = class_names.at(static_cast<size_t>(dets.labels[i]));
    // camera box: bottom centre in rect coordinates, ry = -yaw - pi/2
    const double bottom[3] = {x, y, z - h / 2};
    calib.lidar_to_rect(bottom, o.location);
    o.rotation_y = limit_period(-yaw - kPi / 2);
    o.dimensions[0] = h;
    o.dimensions[1] = w;
    o.dimensions[2] = l;
    o.alpha = limit_period(o.rotation_y - std::atan2(o.location[0], o.location[2]));
    // 2D box: the 8 corners (bottom ccw then top) projected with P2
    const double c = std::cos(yaw), s = std::sin(yaw);
    const double sign[4][2] = {{1, 1}, {-1, 1}, {-1, -1}, {1, -1}};
    double umin = INFINITY, vmin = INFINITY, umax = -INFINITY, vmax = -INFINITY;
    const double zb = z - h / 2, zt = zb + h;
    for (int k = 0; k < 8; ++k) {
      const double lx = sign[k % 4][0] * (l / 2), ly = sign[k % 4][1] * (w / 2);
      const double corner[3] = {c * lx + (-s) * ly + x, s * lx + c * ly + y, k < 4 ? zb : zt};
      double rect[3], hom[3];
      calib.lidar_to_rect(corner, rect);
      rect[2] = std::max(rect[2], 0.1);  // corners behind the camera: clamp to a small positive depth
      calib.rect_to_image(rect, hom);
      const double u = hom[0] / hom[2], v = hom[1] / hom[2];
      umin = std::min(umin, u), umax = std::max(umax, u);
      vmin = std::min(vmin, v), vmax = std::max(vmax, v);
    }
    const double wmax = image.width - 1, hmax = image.height - 1;
    o.bbox[0] = std::clamp(umin, 0.0, wmax);
    o.bbox[1] = std::clamp(vmin, 0.0, hmax);
    o.bbox[2] = std::clamp(umax, 0.0, wmax);
    o.bbox[3] = std::clamp(vmax, 0.0, hmax);
    o.score = dets.scores[i];
    objs.push_back(o);
  }
  return objs;
}

std::string kitti_line(const KittiObject& o) {
  std::string s = o.type + " 0.00 0 ";  // truncated, occluded: unknown for detections
  append_fixed(s, o.alpha, 2);
  for (double v : o.bbox) s += ' ', append_fixed(s, v, 2);
  for (double v : o.dimensions) s += ' ', append_fixed(s, v, 2);
  for (double v : o.location) s += ' ', append_fixed(s, v, 2);
  s += ' ';
  append_fixed(s, o.rotation_y, 2);
  s += ' ';
  append_fixed(s, o.score, 4);
  return s;
}

std::string lidar_line(const Detections& dets, size_t i, const std::vector<std::string>& class_names) {
  std::string s = class_names.at(static_cast<size_t>(dets.labels[i]));
  for (int k = 0; k < 7; ++k) s += ' ', append_fixed(s, dets.boxes[7 * i + k], 4);
  s += ' ';
  append_fixed(s, dets.scores[i], 4);
  return s;
}

}  // namespace sample
}  // namespace clean_deploy
