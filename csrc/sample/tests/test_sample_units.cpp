// Unit tests of the sample's parsers and writers that the end-to-end tests (tests/test_cpp_sample.py)
// reach only on their happy path: JSON edge cases, calib spellings and errors, the voxeliser's order /
// cap / padding rules on a hand-made cloud, KITTI line formatting. Exit status 0 when all pass.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "calib.h"
#include "error.h"
#include "json.h"
#include "kitti_results.h"
#include "voxelizer.h"

using namespace clean_deploy::sample;

namespace {

int failures = 0, checks = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    ++checks;                                                              \
    if (!(cond)) {                                                         \
      ++failures;                                                          \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

// Runs f and returns the SampleError message ("" when nothing was thrown).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const SampleError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void test_json() {
  const JsonValue v = JsonValue::parse(
      R"({"a": [1, -2.5e-3, 0.1, 1E2], "s": "x\"\\\/\n\u00e9\ud83d\ude00", "t": true, "n": null,
          "o": {"k": "v", "k": "last"}, "e": [], "eo": {}})", "t.json");
  const auto& a = v.at("a", "t").as_array("a");
  CHECK(a.size() == 4 && a[0].as_number("") == 1 && a[1].as_number("") == -2.5e-3 && a[2].as_number("") == 0.1 &&
        a[3].as_number("") == 100);
  CHECK(v.at("s", "t").as_string("") == "x\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.at("t", "t").as_bool("") && v.at("n", "t").is_null());
  CHECK(v.at("o", "t").at("k", "o").as_string("") == "last");  // last duplicate wins, like Python's json
  CHECK(v.at("e", "t").as_array("").empty() && v.at("eo", "t").is_object() && !v.has("missing"));
  CHECK(std::isnan(JsonValue::parse("NaN", "t").as_number("")));  // json.dumps writes NaN / Infinity
  CHECK(JsonValue::parse("-Infinity", "t").as_number("") < 0);
  CHECK(contains(error_of([] { JsonValue::parse("{\"a\": 1,\n  \"b\" 2}", "f.json"); }), "f.json:2:7: invalid JSON"));
  CHECK(contains(error_of([] { JsonValue::parse("[1, 2", "f.json"); }), "invalid JSON"));
  CHECK(contains(error_of([] { JsonValue::parse("{} x", "f.json"); }), "trailing"));
  CHECK(contains(error_of([] { JsonValue::parse("[01.2.3]", "f.json"); }), "malformed number"));
  CHECK(contains(error_of([] { JsonValue::parse("\"abc", "f.json"); }), "unterminated string"));
  CHECK(contains(error_of([] { JsonValue::parse(std::string(100, '['), "f.json"); }), "nested too deeply"));
  CHECK(contains(error_of([&] { v.at("nope", "sidecar.json: preprocess"); }), "sidecar.json: preprocess: missing key 'nope'"));
  CHECK(contains(error_of([&] { v.at("a", "t").as_string("t.a"); }), "t.a: expected a string, got an array"));
}

const char* kCalib =
    "P0: 1 0 0 0 0 1 0 0 0 0 1 0\n"
    "P2: 700 0 600 40 0 700 170 0.2 0 0 1 0.003\n"
    "\n"
    "R_rect: 1 0 0 0 1 0 0 0 1\n"                       // KITTI raw spelling of R0_rect
    "Tr_velo_cam: 0 -1 0 0.1 0 0 -1 -0.1 1 0 0 -0.3\n"  // ... and of Tr_velo_to_cam
    "Tr_imu_to_velo: 1 0 0 0 0 1 0 0 0 0 1 0\n"
    "Custom_key: 1 2 3\n";

void test_calib() {
  const Calibration c = parse_kitti_calib(kCalib, "c.txt");
  CHECK(c.P2[0] == 700 && c.P2[11] == 0.003 && c.Tr_velo_to_cam[3] == 0.1);
  const double p[3] = {10, 2, 1};
  double rect[3], hom[3];
  c.lidar_to_rect(p, rect);  // x_cam = -y + 0.1, y_cam = -z - 0.1, z_cam = x - 0.3
  CHECK(std::abs(rect[0] - (-1.9)) < 1e-12 && std::abs(rect[1] - (-1.1)) < 1e-12 && std::abs(rect[2] - 9.7) < 1e-12);
  c.rect_to_image(rect, hom);
  CHECK(std::abs(hom[2] - 9.703) < 1e-12);
  CHECK(contains(error_of([] { parse_kitti_calib("P2: 1 2 3\n", "c.txt"); }), "c.txt:1: P2 needs 12 numbers, got 3"));
  CHECK(contains(error_of([] { parse_kitti_calib("P2 1 2 3\n", "c.txt"); }), "c.txt:1: expected 'KEY: v1 v2 ...'"));
  CHECK(contains(error_of([] { parse_kitti_calib("R0_rect: 1 0 0 0 x 0 0 0 1\n", "c.txt"); }), "non-numeric value 'x'"));
  CHECK(contains(error_of([] { parse_kitti_calib("R0_rect: 1 0 0 0 nan 0 0 0 1\n", "c.txt"); }), "NaN/inf"));
  CHECK(contains(error_of([] { parse_kitti_calib("R0_rect: 1 0 0 0 1 0 0 0 1\n", "c.txt"); }),
                 "missing calibration entries: P2 Tr_velo_to_cam"));
}

void test_voxelizer() {
  VoxelParams p;
  p.point_cloud_range = {0, 0, 0, 4, 4, 4};
  p.voxel_size = {1, 1, 1};
  p.grid_size = {4, 4, 4};
  p.max_points_per_voxel = 2;
  p.max_voxels = 2;
  Voxelizer vox(p);
  PointCloud cloud;
  cloud.data = {
      1.5f, 0.5f, 0.5f, 1,  // voxel A (x=1)
      0.5f, 2.5f, 3.5f, 2,  // voxel B (x=0, y=2, z=3)
      1.2f, 0.1f, 0.9f, 3,  // A again
      4.0f, 0.5f, 0.5f, 9,  // outside the grid (x = max)
      1.9f, 0.2f, 0.3f, 4,  // A, beyond max_points_per_voxel: dropped
      3.5f, 3.5f, 3.5f, 5,  // new voxel C: over the cap
      3.6f, 3.6f, 3.6f, 6,  // C again
      0.1f, 2.9f, 3.1f, 7,  // B
  };
  VoxelBatch b;
  vox.run(cloud, b);
  CHECK(b.num_voxels == 2 && b.overflow_voxels == 1 && b.overflow_points == 2 && b.outside_points == 1);
  CHECK((b.num_points == std::vector<int32_t>{2, 2}));
  CHECK((b.coords == std::vector<int32_t>{0, 0, 0, 1, 0, 3, 2, 0}));  // batch z y x, in first-point order
  CHECK((b.voxels == std::vector<float>{1.5f, 0.5f, 0.5f, 1, 1.2f, 0.1f, 0.9f, 3,
                                        0.5f, 2.5f, 3.5f, 2, 0.1f, 2.9f, 3.1f, 7}));
  // the table is cleared between frames; a later frame with fewer points is padded with zeros
  cloud.data = {3.5f, 3.5f, 3.5f, 5};
  vox.run(cloud, b);
  CHECK(b.num_voxels == 1 && b.overflow_voxels == 0 && (b.coords == std::vector<int32_t>{0, 3, 3, 3}));
  CHECK((b.voxels == std::vector<float>{3.5f, 3.5f, 3.5f, 5, 0, 0, 0, 0}));
  // many distinct voxels: the hash table grows and keeps the first-point order
  p.grid_size = {4, 4, 4};
  p.max_voxels = 64;
  Voxelizer big(p);
  cloud.data.clear();
  for (int z = 3; z >= 0; --z)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) cloud.data.insert(cloud.data.end(), {x + 0.5f, y + 0.5f, z + 0.5f, 0});
  big.run(cloud, b);
  CHECK(b.num_voxels == 64 && b.coords[1] == 3 && b.coords[4 * 63 + 1] == 0 && b.coords[4 * 63 + 3] == 3);
}

void test_kitti_line() {
  KittiObject o;
  o.type = "Car";
  o.alpha = -0.004;  // Python: f"{-0.004:.2f}" == "-0.00"
  o.bbox[0] = 0.125;  // exactly representable: round-half-even -> "0.12", as Python
  o.bbox[1] = 1.005;  // 1.00499999999999989... -> "1.00", as Python
  o.bbox[2] = 1241;
  o.bbox[3] = 374.999;
  o.dimensions[0] = 1.5;
  o.dimensions[1] = 1.6;
  o.dimensions[2] = 3.9;
  o.location[0] = -2.675;
  o.location[1] = 1.7;
  o.location[2] = 30.0;
  o.rotation_y = 3.14159;
  o.score = 0.123456;
  CHECK(kitti_line(o) == "Car 0.00 0 -0.00 0.12 1.00 1241.00 375.00 1.50 1.60 3.90 -2.67 1.70 30.00 3.14 0.1235");
}

}  // namespace

int main() {
  test_json();
  test_calib();
  test_voxelizer();
  test_kitti_line();
  std::printf("test_sample_units: %d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
