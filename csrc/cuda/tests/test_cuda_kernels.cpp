// test_cuda_kernels: the CUDA kernels (clean_deploy_cuda.h) against the CPU kernels, which are the
// executable specification (clean_deploy_cpu), on random inputs.
//
//  - sparse conv rulebook: output sites (set and order) and the whole neighbour table identical to
//    clean_deploy::build_rulebook, for submanifold and regular/strided/dilated geometries, several
//    batches; error flags for out-of-range and duplicate sites; truncation at max_outputs;
//  - sparse conv features: float32 against sparse_conv_forward (same FMA order: normally bitwise
//    equal), float16 storage against the CPU result on the same half-rounded inputs; bitwise
//    determinism over repeated runs;
//  - IoU-aware redundancy elimination: anchor and center heads, with and without the IoU / direction
//    branches, against decode_*_frame + eliminate: same kept boxes, labels and order.
//
// Host-only checks (geometry validation, output shapes) run everywhere; without a CUDA device the
// program then prints "SKIPPED: no CUDA device ..." and exits 0 (CI machines have nvcc but no GPU).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "clean_deploy/parallel.h"
#include "clean_deploy/redundancy.h"
#include "clean_deploy/sparse_conv.h"
#include "clean_deploy/half_bits.h"
#include "clean_deploy/testing/check.h"
#include "clean_deploy_cuda.h"

using namespace clean_deploy;

namespace {

using clean_deploy::testing::g_checks;
using clean_deploy::testing::g_failures;

#define CUDA_OK(expr)                                                                                  \
  do {                                                                                                 \
    const cudaError_t e_ = (expr);                                                                     \
    if (e_ != cudaSuccess) {                                                                           \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                                    \
    }                                                                                                  \
  } while (0)

#define CD_OK(expr)                                                                                     \
  do {                                                                                                  \
    const cdCudaStatus s_ = (expr);                                                                     \
    if (s_ != CD_CUDA_OK) {                                                                             \
      std::fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr, cdCudaStatusName(s_), \
                   cdCudaLastError());                                                                  \
      std::exit(1);                                                                                     \
    }                                                                                                   \
  } while (0)

// Device buffer with host round trips.
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count = 0) { resize(count); }
  explicit Dev(const std::vector<T>& h) {
    resize(h.size());
    if (n) CUDA_OK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Dev() {
    if (p) cudaFree(p);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void resize(size_t count) {
    if (p) cudaFree(p);
    p = nullptr;
    n = count;
    if (n) CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)));
  }
  std::vector<T> host(size_t count) const {
    std::vector<T> h(count);
    if (count) CUDA_OK(cudaMemcpy(h.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  std::vector<T> host() const { return host(n); }
};

using clean_deploy::half_bits::from_half;
using clean_deploy::half_bits::to_half;

// ---- host-only checks -------------------------------------------------------------------------

cdSparseConvGeometry to_cd(const ConvGeometry& g) {
  cdSparseConvGeometry c{};
  for (int a = 0; a < 3; ++a) {
    c.kernel[a] = static_cast<int32_t>(g.kernel[a]);
    c.stride[a] = static_cast<int32_t>(g.stride[a]);
    c.padding[a] = static_cast<int32_t>(g.padding[a]);
    c.dilation[a] = static_cast<int32_t>(g.dilation[a]);
    c.in_shape[a] = static_cast<int32_t>(g.in_shape[a]);
  }
  c.subm = g.subm ? 1 : 0;
  return c;
}

ConvGeometry geometry(std::array<int64_t, 3> shape, std::array<int64_t, 3> k, std::array<int64_t, 3> s,
                      std::array<int64_t, 3> p, std::array<int64_t, 3> d, bool subm) {
  ConvGeometry g;
  g.in_shape = shape, g.kernel = k, g.stride = s, g.padding = p, g.dilation = d, g.subm = subm;
  return g;
}

void host_checks() {
  const std::vector<ConvGeometry> good = {
      geometry({41, 160, 140}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, true),
      geometry({41, 160, 140}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, false),
      geometry({11, 40, 35}, {3, 1, 1}, {2, 1, 1}, {0, 0, 0}, {1, 1, 1}, false),
      geometry({9, 17, 15}, {2, 3, 4}, {1, 2, 3}, {0, 1, 2}, {2, 1, 1}, false),
  };
  for (const auto& g : good) {
    const cdSparseConvGeometry c = to_cd(g);
    CHECK(cdSparseConvCheckGeometry(&c) == CD_CUDA_OK, "valid geometry rejected: %s", cdCudaLastError());
    int64_t out[3];
    CHECK(cdSparseConvOutShape(&c, out) == CD_CUDA_OK, "out shape failed");
    const auto ref = g.out_shape();
    CHECK(out[0] == ref[0] && out[1] == ref[1] && out[2] == ref[2], "out shape differs from the CPU kernel");
    CHECK(cdSparseConvKernelVolume(&c) == g.kernel_volume(), "kernel volume");
  }
  // invalid geometries: the same ones the CPU kernel rejects
  const std::vector<ConvGeometry> bad = {
      geometry({4, 4, 4}, {3, 3, 3}, {2, 1, 1}, {0, 0, 0}, {1, 1, 1}, true),   // strided subm
      geometry({2, 4, 4}, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, false),  // empty output
      geometry({4, 4, 4}, {0, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, false),  // zero kernel
      geometry({4, 4, 4}, {3, 3, 3}, {1, 1, 1}, {-1, 0, 0}, {1, 1, 1}, false), // negative padding
  };
  for (const auto& g : bad) {
    const cdSparseConvGeometry c = to_cd(g);
    bool cpu_rejects = false;
    try {
      g.validate();
    } catch (const std::invalid_argument&) {
      cpu_rejects = true;
    }
    CHECK(cpu_rejects, "the CPU kernel accepts a geometry this test calls invalid");
    CHECK(cdSparseConvCheckGeometry(&c) == CD_CUDA_ERR_INVALID_ARGUMENT && std::strlen(cdCudaLastError()) > 0,
          "invalid geometry accepted");
  }
  // fan-out bound: stride-2 3x3x3 -> 2 per axis
  const cdSparseConvGeometry c = to_cd(good[1]);
  CHECK(cdSparseConvMaxOutputsPerInput(&c) == 8, "max outputs per input of a stride-2 3^3 conv");
}

// ---- sparse conv ------------------------------------------------------------------------------

struct ConvCase {
  const char* name;
  ConvGeometry g;
  int64_t cin, cout;
  std::vector<int32_t> batches;
  double density;
  bool relu;
};

std::vector<int32_t> random_sites(const ConvCase& c, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int32_t> idx;
  for (int32_t b : c.batches)
    for (int32_t z = 0; z < c.g.in_shape[0]; ++z)
      for (int32_t y = 0; y < c.g.in_shape[1]; ++y)
        for (int32_t x = 0; x < c.g.in_shape[2]; ++x)
          if (u(rng) < c.density) idx.insert(idx.end(), {b, z, y, x});
  const int64_t n = static_cast<int64_t>(idx.size() / 4);
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);  // inputs need not be sorted
  std::vector<int32_t> out(idx.size());
  for (int64_t i = 0; i < n; ++i) std::memcpy(&out[4 * i], &idx[4 * perm[i]], 16);
  return out;
}

struct GpuRulebook {
  int64_t num_out = 0;
  int32_t error = 0;
  std::vector<int32_t> out_indices, neighbors;
};

GpuRulebook gpu_rulebook(const cdSparseConvGeometry& g, const Dev<int32_t>& d_idx, int64_t n, int64_t max_out,
                         Dev<int32_t>& d_out_idx, Dev<int32_t>& d_nbr, Dev<int32_t>& d_num) {
  const int64_t K = cdSparseConvKernelVolume(&g);
  const size_t ws = cdSparseConvRulebookWorkspaceSize(&g, n);
  CHECK(ws > 0, "workspace size query failed: %s", cdCudaLastError());
  Dev<char> d_ws(ws);
  Dev<int32_t> d_err(1);
  d_out_idx.resize(static_cast<size_t>(std::max<int64_t>(max_out, 1) * 4));
  d_nbr.resize(static_cast<size_t>(std::max<int64_t>(max_out, 1) * K));
  d_num.resize(1);
  CUDA_OK(cudaMemset(d_err.p, 0, sizeof(int32_t)));
  CD_OK(cdSparseConvRulebook(&g, d_idx.p, n, max_out, g.subm ? nullptr : d_out_idx.p, d_nbr.p, d_num.p, d_err.p,
                             d_ws.p, ws, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  GpuRulebook r;
  r.num_out = d_num.host()[0];
  r.error = d_err.host()[0];
  r.neighbors = d_nbr.host(static_cast<size_t>(r.num_out * K));
  if (!g.subm) r.out_indices = d_out_idx.host(static_cast<size_t>(r.num_out * 4));
  return r;
}

void test_sparse_conv(const ConvCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const std::vector<int32_t> idx = random_sites(c, rng);
  const int64_t n = static_cast<int64_t>(idx.size() / 4);
  const int64_t K = c.g.kernel_volume();
  std::vector<float> feats(static_cast<size_t>(n * c.cin)), weight(static_cast<size_t>(c.cout * K * c.cin)),
      bias(static_cast<size_t>(c.cout));
  for (auto& v : feats) v = u(rng);
  for (auto& v : weight) v = u(rng) * 0.2f;
  for (auto& v : bias) v = u(rng);

  SerialExecutor serial;
  const Rulebook rb = build_rulebook(idx.data(), n, c.g, serial);
  const Activation act = c.relu ? Activation::kReLU : Activation::kNone;
  std::vector<float> ref(static_cast<size_t>(rb.num_out * c.cout));
  sparse_conv_forward(feats.data(), c.cin, weight.data(), c.cout, bias.data(), rb, act, ref.data(), serial);

  const cdSparseConvGeometry g = to_cd(c.g);
  const int64_t max_out = n * cdSparseConvMaxOutputsPerInput(&g);
  Dev<int32_t> d_idx(idx), d_out_idx, d_nbr, d_num;
  const GpuRulebook r = gpu_rulebook(g, d_idx, n, max_out, d_out_idx, d_nbr, d_num);
  CHECK(r.error == 0, "[%s] error flags %d on valid input", c.name, r.error);
  CHECK(r.num_out == rb.num_out, "[%s] %lld output sites, CPU %lld", c.name, (long long)r.num_out,
        (long long)rb.num_out);
  if (r.num_out != rb.num_out) return;
  if (!c.g.subm)
    CHECK(r.out_indices == rb.out_indices, "[%s] output sites (or their order) differ from the CPU kernel", c.name);
  int64_t nbr_diff = 0;
  for (size_t i = 0; i < rb.neighbors.size(); ++i) nbr_diff += r.neighbors[i] != rb.neighbors[i];
  CHECK(nbr_diff == 0, "[%s] %lld neighbour-table entries differ from the CPU kernel", c.name, (long long)nbr_diff);

  // features, float32
  Dev<float> d_feat(feats), d_w(weight), d_b(bias), d_out(static_cast<size_t>(std::max<int64_t>(max_out, 1) * c.cout));
  CD_OK(cdSparseConvGemm(CD_FLOAT32, d_feat.p, n, static_cast<int32_t>(c.cin), d_nbr.p, max_out, d_num.p,
                         static_cast<int32_t>(K), d_w.p, d_b.p, static_cast<int32_t>(c.cout), c.relu, d_out.p,
                         nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> out = d_out.host(ref.size());
  double max_diff = 0;
  int64_t exact = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(out[i] - ref[i])));
    exact += std::memcmp(&out[i], &ref[i], 4) == 0;
  }
  CHECK(max_diff <= 1e-4, "[%s] float32 features differ from the CPU kernel by %g", c.name, max_diff);
  std::printf("  %-34s n=%-6lld m=%-6lld fp32 max|diff| %.2e (%.1f%% bitwise equal to the CPU kernel, %s)\n", c.name,
              (long long)n, (long long)r.num_out, max_diff, ref.empty() ? 100.0 : 100.0 * exact / ref.size(),
              gemm_isa_name());

  // determinism: a second run (rulebook + GEMM) is bitwise identical
  Dev<int32_t> d_out_idx2, d_nbr2, d_num2;
  const GpuRulebook r2 = gpu_rulebook(g, d_idx, n, max_out, d_out_idx2, d_nbr2, d_num2);
  Dev<float> d_out2(static_cast<size_t>(std::max<int64_t>(max_out, 1) * c.cout));
  CD_OK(cdSparseConvGemm(CD_FLOAT32, d_feat.p, n, static_cast<int32_t>(c.cin), d_nbr2.p, max_out, d_num2.p,
                         static_cast<int32_t>(K), d_w.p, d_b.p, static_cast<int32_t>(c.cout), c.relu, d_out2.p,
                         nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  CHECK(r2.neighbors == r.neighbors && r2.out_indices == r.out_indices && d_out2.host(ref.size()) == out,
        "[%s] a second run differs (non-deterministic)", c.name);

  // float16 storage, float32 accumulation: against the CPU kernel on the half-rounded features
  std::vector<uint16_t> feats_h(feats.size());
  std::vector<float> feats_r(feats.size());
  for (size_t i = 0; i < feats.size(); ++i) feats_h[i] = to_half(feats[i]), feats_r[i] = from_half(feats_h[i]);
  std::vector<float> ref_h(ref.size());
  sparse_conv_forward(feats_r.data(), c.cin, weight.data(), c.cout, bias.data(), rb, act, ref_h.data(), serial);
  Dev<uint16_t> d_feat_h(feats_h), d_out_h(static_cast<size_t>(std::max<int64_t>(max_out, 1) * c.cout));
  CD_OK(cdSparseConvGemm(CD_FLOAT16, d_feat_h.p, n, static_cast<int32_t>(c.cin), d_nbr.p, max_out, d_num.p,
                         static_cast<int32_t>(K), d_w.p, d_b.p, static_cast<int32_t>(c.cout), c.relu, d_out_h.p,
                         nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint16_t> out_h = d_out_h.host(ref.size());
  double max_rel = 0;
  for (size_t i = 0; i < ref_h.size(); ++i) {
    const double want = ref_h[i], got = from_half(out_h[i]);
    max_rel = std::max(max_rel, std::fabs(got - want) / std::max(1.0, std::fabs(want)));
  }
  CHECK(max_rel <= 1e-3, "[%s] float16 output differs by %g (relative) from the CPU result", c.name, max_rel);
}

void test_sparse_conv_errors() {
  // duplicate and out-of-range sites set the error flags (the CPU kernel throws for both)
  const ConvGeometry gs = geometry({4, 5, 6}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, true);
  const ConvGeometry gr = geometry({4, 5, 6}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, false);
  const std::vector<int32_t> dup = {0, 1, 1, 1, 0, 2, 2, 2, 0, 1, 1, 1};
  const std::vector<int32_t> oob = {0, 1, 1, 1, 0, 4, 0, 0};
  for (const ConvGeometry* cg : {&gs, &gr}) {
    const cdSparseConvGeometry g = to_cd(*cg);
    for (const auto* in : {&dup, &oob}) {
      const int64_t n = static_cast<int64_t>(in->size() / 4);
      Dev<int32_t> d_idx(*in), d_out_idx, d_nbr, d_num;
      const GpuRulebook r = gpu_rulebook(g, d_idx, n, n * cdSparseConvMaxOutputsPerInput(&g), d_out_idx, d_nbr, d_num);
      const int32_t want = in == &dup ? CD_CUDA_DATA_DUPLICATE_SITE : CD_CUDA_DATA_SITE_OUT_OF_RANGE;
      CHECK((r.error & want) != 0, "%s conv: error flags %d, expected bit %d", cg->subm ? "subm" : "regular", r.error,
            want);
      bool in_range = true;
      for (int32_t v : r.neighbors) in_range &= v >= -1 && v < n;
      CHECK(in_range, "neighbour table out of range after bad input");
    }
  }
  // truncation at max_outputs: the first rows are the CPU's first rows, the flag is set
  ConvCase c{"capacity", gr, 4, 4, {0}, 0.5, false};
  std::mt19937 rng(7);
  const std::vector<int32_t> idx = random_sites(c, rng);
  const int64_t n = static_cast<int64_t>(idx.size() / 4);
  SerialExecutor serial;
  const Rulebook rb = build_rulebook(idx.data(), n, gr, serial);
  const int64_t cap = rb.num_out / 2;
  const cdSparseConvGeometry g = to_cd(gr);
  Dev<int32_t> d_idx(idx), d_out_idx, d_nbr, d_num;
  const GpuRulebook r = gpu_rulebook(g, d_idx, n, cap, d_out_idx, d_nbr, d_num);
  CHECK(r.num_out == cap && (r.error & CD_CUDA_DATA_CAPACITY), "capacity: num_out %lld (cap %lld), flags %d",
        (long long)r.num_out, (long long)cap, r.error);
  CHECK(std::equal(r.out_indices.begin(), r.out_indices.end(), rb.out_indices.begin()),
        "capacity: the kept rows are not the CPU's first rows");
  // empty input
  Dev<int32_t> d_empty, e_out_idx, e_nbr, e_num;
  const GpuRulebook e = gpu_rulebook(g, d_empty, 0, 0, e_out_idx, e_nbr, e_num);
  CHECK(e.num_out == 0 && e.error == 0, "empty input: num_out %lld", (long long)e.num_out);
}

// ---- redundancy elimination -------------------------------------------------------------------

struct ReCase {
  const char* name;
  cdHeadType head;
  bool iou, dir, sincos;
  float cross;
};

struct Result {
  int64_t count = 0;
  std::vector<float> boxes, scores;
  std::vector<int32_t> labels;
};

void compare(const char* name, int frame, const Result& cpu, const Result& gpu) {
  CHECK(cpu.count == gpu.count, "[%s] frame %d: %lld kept boxes, CPU %lld", name, frame, (long long)gpu.count,
        (long long)cpu.count);
  const int64_t n = std::min(cpu.count, gpu.count);
  int64_t label_diff = 0;
  double box_diff = 0, score_diff = 0;
  for (int64_t i = 0; i < n; ++i) {
    label_diff += cpu.labels[i] != gpu.labels[i];
    score_diff = std::max(score_diff, static_cast<double>(std::fabs(cpu.scores[i] - gpu.scores[i])));
    for (int j = 0; j < 7; ++j)
      box_diff = std::max(box_diff, static_cast<double>(std::fabs(cpu.boxes[i * 7 + j] - gpu.boxes[i * 7 + j])));
  }
  CHECK(label_diff == 0 && box_diff <= 1e-4 && score_diff <= 1e-6,
        "[%s] frame %d: kept boxes differ (labels %lld, max box diff %g, max score diff %g)", name, frame,
        (long long)label_diff, box_diff, score_diff);
  std::printf("  %-34s frame %d: %lld kept, max|box diff| %.1e, max|score diff| %.1e\n", name, frame,
              (long long)gpu.count, box_diff, score_diff);
}

void test_redundancy(const ReCase& rc, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f), logit(-6.f, 3.f);
  const int C = 3, B = 2, bins = 2;
  cdRedundancyParams p{};
  p.head_type = rc.head;
  p.num_classes = C;
  p.code_sincos = rc.sincos;
  p.code_size = rc.sincos ? 8 : 7;
  p.use_dir = rc.dir;
  p.num_dir_bins = bins;
  p.dir_offset = 0.78539f;
  p.dir_limit_offset = 0.0f;
  p.top_k = 300;
  const float pc[6] = {0.f, -40.f, -3.f, 70.4f, 40.f, 1.f};
  std::copy(pc, pc + 6, p.pc_range);
  p.cell_size[0] = 0.8f, p.cell_size[1] = 0.8f;
  const float beta[3] = {0.5f, 0.3f, 0.0f}, min_iou[3] = {0.1f, 0.0f, 0.2f}, nms[3] = {0.1f, 0.3f, 0.5f};
  for (int c = 0; c < C; ++c) p.beta[c] = beta[c], p.min_iou[c] = min_iou[c], p.nms_thresh[c] = nms[c];
  p.score_thresh = 0.1f;
  p.cross_class_thresh = rc.cross;
  p.pre_max = 400;
  p.max_output = 400;

  DecodeParams dp;
  dp.head = rc.head == CD_HEAD_ANCHOR ? HeadType::kAnchor : HeadType::kCenter;
  dp.num_classes = C;
  dp.code_sincos = rc.sincos;
  dp.use_dir = rc.dir;
  dp.num_dir_bins = bins;
  dp.dir_offset = p.dir_offset;
  dp.dir_limit_offset = p.dir_limit_offset;
  dp.top_k = p.top_k;
  std::copy(pc, pc + 6, dp.pc_range);
  dp.cell_size[0] = p.cell_size[0], dp.cell_size[1] = p.cell_size[1];
  EliminationParams ep;
  ep.beta.assign(beta, beta + C), ep.min_iou.assign(min_iou, min_iou + C), ep.nms_thresh.assign(nms, nms + C);
  ep.score_thresh = p.score_thresh, ep.cross_class_thresh = p.cross_class_thresh;
  ep.pre_max = p.pre_max, ep.max_output = p.max_output;

  const int64_t H = 24, W = 20;
  std::vector<float> cls, box, dir, iou, anchors;
  int64_t K = 0;
  if (rc.head == CD_HEAD_ANCHOR) {
    // two rotations per cell of a 1.6 m grid, car-sized anchors: neighbours overlap strongly
    K = H * W * 2;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int r = 0; r < 2; ++r)
          anchors.insert(anchors.end(), {x * 1.6f, y * 1.6f - 20.f, -1.f, 3.9f, 1.6f, 1.56f, r * 1.5708f});
    for (int64_t i = 0; i < B * K * C; ++i) cls.push_back(logit(rng));
    for (int64_t i = 0; i < B * K * p.code_size; ++i) box.push_back(u(rng) * 0.3f);
    for (int64_t i = 0; i < B * K * bins; ++i) dir.push_back(u(rng));
    for (int64_t i = 0; i < B * K; ++i) iou.push_back(u(rng) * 3.f);
  } else {
    for (int64_t i = 0; i < B * C * H * W; ++i) cls.push_back(logit(rng));
    for (int64_t i = 0; i < B * 8 * H * W; ++i) box.push_back(u(rng) * 0.8f + 0.4f);
    for (int64_t i = 0; i < B * H * W; ++i) iou.push_back(u(rng) * 3.f);
  }
  const int64_t M = p.max_output;
  Dev<float> d_cls(cls), d_box(box), d_dir(dir), d_iou(iou), d_anchors(anchors);
  Dev<float> d_boxes(static_cast<size_t>(B * M * 7)), d_scores(static_cast<size_t>(B * M));
  Dev<int32_t> d_labels(static_cast<size_t>(B * M)), d_valid(static_cast<size_t>(B));
  const size_t ws = cdRedundancyWorkspaceSize(&p, K, H, W);
  CHECK(ws > 0, "[%s] workspace size query failed: %s", rc.name, cdCudaLastError());
  Dev<char> d_ws(ws);
  CD_OK(cdRedundancyForward(&p, B, K, H, W, d_cls.p, d_box.p, rc.dir ? d_dir.p : nullptr, rc.iou ? d_iou.p : nullptr,
                            d_anchors.p, d_boxes.p, d_scores.p, d_labels.p, d_valid.p, d_ws.p, ws, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto g_boxes = d_boxes.host(), g_scores = d_scores.host();
  const auto g_labels = d_labels.host(), g_valid = d_valid.host();

  for (int f = 0; f < B; ++f) {
    Candidates cand;
    if (rc.head == CD_HEAD_ANCHOR) {
      cand = decode_anchor_frame(cls.data() + f * K * C, box.data() + f * K * p.code_size,
                                 rc.dir ? dir.data() + f * K * bins : nullptr, rc.iou ? iou.data() + f * K : nullptr,
                                 anchors.data(), K, p.code_size, dp, ep.score_thresh);
    } else {
      cand = decode_center_frame(cls.data() + f * C * H * W, box.data() + f * 8 * H * W,
                                 rc.iou ? iou.data() + f * H * W : nullptr, H, W, dp);
    }
    Result cpu, gpu;
    cpu.boxes.assign(static_cast<size_t>(M * 7), 0.f), cpu.scores.assign(static_cast<size_t>(M), 0.f);
    cpu.labels.assign(static_cast<size_t>(M), -1);
    cpu.count = eliminate(cand, ep, cpu.boxes.data(), cpu.scores.data(), cpu.labels.data());
    gpu.count = g_valid[f];
    gpu.boxes.assign(g_boxes.begin() + f * M * 7, g_boxes.begin() + (f + 1) * M * 7);
    gpu.scores.assign(g_scores.begin() + f * M, g_scores.begin() + (f + 1) * M);
    gpu.labels.assign(g_labels.begin() + f * M, g_labels.begin() + (f + 1) * M);
    compare(rc.name, f, cpu, gpu);
    bool padded = true;
    for (int64_t i = gpu.count; i < M; ++i) {
      padded &= gpu.labels[i] == -1 && gpu.scores[i] == 0.f;
      for (int j = 0; j < 7; ++j) padded &= gpu.boxes[i * 7 + j] == 0.f;
    }
    CHECK(padded, "[%s] frame %d: rows past valid_count are not zero / -1", rc.name, f);
  }
}

}  // namespace

int main() {
  host_checks();
  std::printf("test_cuda_kernels: %d host-side checks, %d failed\n", g_checks, g_failures);
  if (g_failures) return 1;
  const int devices = cdCudaDeviceCount();
  if (devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s): the CUDA kernels were compiled but not run\n", cdCudaLastError());
    return 0;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);

  const std::vector<ConvCase> cases = {
      {"subm 3^3, 4->16", geometry({10, 24, 22}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, true), 4, 16, {0}, 0.15, true},
      {"subm 3^3, 2 batches, 20->32", geometry({8, 20, 18}, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, true), 20, 32, {0, 3}, 0.2, false},
      {"subm 3^3 dilated, 16->64", geometry({9, 17, 15}, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {2, 1, 2}, true), 16, 64, {1}, 0.3, true},
      {"subm (1,3,5), 32->40", geometry({6, 19, 21}, {1, 3, 5}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, true), 32, 40, {0}, 0.2, true},
      {"subm 3^3 dense, 64->128", geometry({5, 12, 12}, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, true), 64, 128, {0}, 0.9, true},
      {"regular 3^3 s2 p1, 16->32", geometry({11, 24, 22}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, false), 16, 32, {0, 2}, 0.15, true},
      {"regular 3^3 s1 p0, 8->16", geometry({7, 13, 12}, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, false), 8, 16, {0}, 0.2, false},
      {"regular 3^3 s2 p(0,1,1), 64->64", geometry({5, 25, 23}, {3, 3, 3}, {2, 2, 2}, {0, 1, 1}, {1, 1, 1}, false), 64, 64, {0}, 0.2, true},
      {"regular (3,1,1) s(2,1,1), 64->128", geometry({5, 13, 11}, {3, 1, 1}, {2, 1, 1}, {0, 0, 0}, {1, 1, 1}, false), 64, 128, {0}, 0.3, true},
      {"regular 2^3 s2 dilated, 4->20", geometry({9, 17, 15}, {2, 3, 2}, {2, 1, 3}, {1, 0, 2}, {2, 1, 1}, false), 4, 20, {0, 5}, 0.2, false},
      {"regular 1^3, 3->5", geometry({4, 6, 5}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, false), 3, 5, {0}, 0.5, true},
  };
  std::printf("sparse convolution (rulebook exact, features vs the CPU kernel):\n");
  uint32_t seed = 1;
  for (const auto& c : cases) test_sparse_conv(c, seed++);
  test_sparse_conv_errors();

  std::printf("IoU-aware redundancy elimination (kept boxes vs the CPU kernel):\n");
  const std::vector<ReCase> re = {
      {"anchor, iou+dir", CD_HEAD_ANCHOR, true, true, false, 0.6f},
      {"anchor, plain NMS", CD_HEAD_ANCHOR, false, true, false, 1.0f},
      {"anchor, sincos, no dir", CD_HEAD_ANCHOR, true, false, true, 0.4f},
      {"center, iou", CD_HEAD_CENTER, true, false, false, 0.6f},
      {"center, plain NMS", CD_HEAD_CENTER, false, false, false, 1.0f},
  };
  for (const auto& rc : re) test_redundancy(rc, seed++);

  std::printf("test_cuda_kernels: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
