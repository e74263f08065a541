// clean_deploy C++ sample: KITTI calib parser and transforms (see calib.h); the same rules and
// messages as clean_deploy.geometry.calib.Calibration.from_text.
#include "calib.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <vector>

#include "error.h"
#include "file_io.h"

namespace clean_deploy {
namespace sample {

namespace {

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(ws);
  return s.substr(a, b - a + 1);
}

// Python float() accepts a leading '+' and "nan"/"inf" spellings; from_chars does not take '+'.
bool parse_double(const std::string& tok, double& out) {
  const char* first = tok.data();
  const char* last = tok.data() + tok.size();
  if (first != last && *first == '+') ++first;
  const auto res = std::from_chars(first, last, out);
  return res.ec == std::errc() && res.ptr == last;
}

}  // namespace

void Calibration::lidar_to_rect(const double in[3], double out[3]) const {
  const auto& m = velo_to_rect;
  for (int r = 0; r < 3; ++r) out[r] = in[0] * m[4 * r] + in[1] * m[4 * r + 1] + in[2] * m[4 * r + 2] + m[4 * r + 3];
}

void Calibration::rect_to_image(const double in[3], double out[3]) const {
  const auto& p = P2;
  for (int r = 0; r < 3; ++r) out[r] = in[0] * p[4 * r] + in[1] * p[4 * r + 1] + in[2] * p[4 * r + 2] + p[4 * r + 3];
}

Calibration parse_kitti_calib(const std::string& text, const std::string& source) {
  Calibration c;
  c.source = source;
  bool have_p2 = false, have_r0 = false, have_tr = false;
  std::istringstream lines(text);
  std::string raw;
  int lineno = 0;
  while (std::getline(lines, raw)) {
    ++lineno;
    const std::string line = trim(raw);
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    const std::string where = source + ":" + std::to_string(lineno);
    if (colon == std::string::npos) throw SampleError(where + ": expected 'KEY: v1 v2 ...', got '" + raw + "'");
    std::string key = trim(line.substr(0, colon));
    if (key == "R_rect") key = "R0_rect";  // KITTI raw / odometry spellings
    if (key == "Tr_velo_cam") key = "Tr_velo_to_cam";
    double* dst = nullptr;
    size_t want = 0;
    if (key == "P2") {
      dst = c.P2.data(), want = 12, have_p2 = true;
    } else if (key == "R0_rect") {
      dst = c.R0_rect.data(), want = 9, have_r0 = true;
    } else if (key == "Tr_velo_to_cam") {
      dst = c.Tr_velo_to_cam.data(), want = 12, have_tr = true;
    } else {
      continue;  // P0, P1, P3, Tr_imu_to_velo and unknown keys: not needed here
    }
    std::istringstream vals(line.substr(colon + 1));
    std::vector<double> v;
    std::string tok;
    while (vals >> tok) {
      double d = 0;
      if (!parse_double(tok, d)) throw SampleError(where + ": " + key + ": non-numeric value '" + tok + "'");
      v.push_back(d);
    }
    if (v.size() != want)
      throw SampleError(where + ": " + key + " needs " + std::to_string(want) + " numbers, got " + std::to_string(v.size()));
    for (double d : v)
      if (!std::isfinite(d)) throw SampleError(where + ": " + key + " has NaN/inf values");
    std::copy(v.begin(), v.end(), dst);
  }
  std::string missing;
  if (!have_p2) missing += " P2";
  if (!have_r0) missing += " R0_rect";
  if (!have_tr) missing += " Tr_velo_to_cam";
  if (!missing.empty()) throw SampleError(source + ": missing calibration entries:" + missing);
  // velo_to_rect = [R0 0; 0 1] * [Tr; 0 0 0 1], top 3 rows
  for (int r = 0; r < 3; ++r) {
    for (int col = 0; col < 4; ++col) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += c.R0_rect[3 * r + k] * c.Tr_velo_to_cam[4 * k + col];
      c.velo_to_rect[4 * r + col] = s;
    }
  }
  return c;
}

Calibration read_kitti_calib(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw SampleError("calib file not found: " + path);
  return parse_kitti_calib(read_file(path, "calib file"), path);
}

}  // namespace sample
}  // namespace clean_deploy
