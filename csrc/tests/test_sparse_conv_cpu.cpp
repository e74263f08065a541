// C++ tests of the CPU sparse conv kernels (run by ctest and by tests/test_csrc_sparse_conv.py):
// rulebook and features against a brute-force reference, every SGEMM kernel against the portable
// one, bitwise determinism over thread counts, the radix sort, and errors for bad inputs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "clean_deploy/sparse_conv.h"
#include "gemm_kernels.h"
#include "radix_sort.h"
#include "rulebook.h"

using namespace clean_deploy;

namespace {

int g_failures = 0;

#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      ++g_failures;                                               \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                          \
      std::fprintf(stderr, "\n");                                 \
    }                                                             \
  } while (0)

using Site = std::array<int32_t, 4>;

struct Problem {
  ConvGeometry g;
  int64_t batch = 1, cin = 4, cout = 4;
  double density = 0.1;
  bool bias = true;
  Activation act = Activation::kNone;
};

struct Data {
  std::vector<int32_t> indices;
  std::vector<float> features, weight, bias;
  int64_t n = 0;
};

Data make_data(const Problem& p, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f), keep(0.f, 1.f);
  Data d;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t z = 0; z < p.g.in_shape[0]; ++z)
      for (int64_t y = 0; y < p.g.in_shape[1]; ++y)
        for (int64_t x = 0; x < p.g.in_shape[2]; ++x)
          if (keep(rng) < p.density)
            d.indices.insert(d.indices.end(), {int32_t(b), int32_t(z), int32_t(y), int32_t(x)});
  d.n = int64_t(d.indices.size() / 4);
  // shuffle rows: inputs need not be sorted
  std::vector<int64_t> perm(d.n);
  for (int64_t i = 0; i < d.n; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> shuffled(d.indices.size());
  for (int64_t i = 0; i < d.n; ++i) std::memcpy(&shuffled[4 * i], &d.indices[4 * perm[i]], 16);
  d.indices.swap(shuffled);
  d.features.resize(d.n * p.cin);
  for (auto& f : d.features) f = u(rng);
  d.weight.resize(p.cout * p.g.kernel_volume() * p.cin);
  for (auto& w : d.weight) w = u(rng);
  if (p.bias) {
    d.bias.resize(p.cout);
    for (auto& b : d.bias) b = u(rng);
  }
  return d;
}

// Brute force: output sites and features in double, from the definition in docs/custom_ops.md.
struct Reference {
  std::vector<Site> out;                 // subm: input order; regular: sorted
  std::vector<double> feats;             // out.size() x cout
  std::vector<int64_t> pairs;            // per kernel offset
};

Reference reference(const Problem& p, const Data& d) {
  const auto& g = p.g;
  std::map<Site, int64_t> in;
  for (int64_t i = 0; i < d.n; ++i) in[{d.indices[4 * i], d.indices[4 * i + 1], d.indices[4 * i + 2], d.indices[4 * i + 3]}] = i;
  Reference r;
  const auto os = g.out_shape();
  if (g.subm) {
    for (int64_t i = 0; i < d.n; ++i) r.out.push_back({d.indices[4 * i], d.indices[4 * i + 1], d.indices[4 * i + 2], d.indices[4 * i + 3]});
  } else {
    std::set<Site> outs;
    for (const auto& kv : in)
      for (int32_t oz = 0; oz < os[0]; ++oz)
        for (int32_t oy = 0; oy < os[1]; ++oy)
          for (int32_t ox = 0; ox < os[2]; ++ox) {
            bool hit = false;
            for (int64_t kz = 0; kz < g.kernel[0] && !hit; ++kz)
              for (int64_t ky = 0; ky < g.kernel[1] && !hit; ++ky)
                for (int64_t kx = 0; kx < g.kernel[2] && !hit; ++kx)
                  hit = oz * g.stride[0] - g.padding[0] + kz * g.dilation[0] == kv.first[1] &&
                        oy * g.stride[1] - g.padding[1] + ky * g.dilation[1] == kv.first[2] &&
                        ox * g.stride[2] - g.padding[2] + kx * g.dilation[2] == kv.first[3];
            if (hit) outs.insert({kv.first[0], oz, oy, ox});
          }
    r.out.assign(outs.begin(), outs.end());
  }
  const int64_t K = g.kernel_volume();
  r.pairs.assign(K, 0);
  r.feats.assign(r.out.size() * p.cout, 0.0);
  for (size_t o = 0; o < r.out.size(); ++o) {
    for (int64_t c = 0; c < p.cout; ++c) r.feats[o * p.cout + c] = p.bias ? d.bias[c] : 0.0;
    for (int64_t kz = 0; kz < g.kernel[0]; ++kz)
      for (int64_t ky = 0; ky < g.kernel[1]; ++ky)
        for (int64_t kx = 0; kx < g.kernel[2]; ++kx) {
          const int64_t k = (kz * g.kernel[1] + ky) * g.kernel[2] + kx;
          Site s = r.out[o];
          if (g.subm) {
            s[1] += int32_t((kz - g.kernel[0] / 2) * g.dilation[0]);
            s[2] += int32_t((ky - g.kernel[1] / 2) * g.dilation[1]);
            s[3] += int32_t((kx - g.kernel[2] / 2) * g.dilation[2]);
          } else {
            s[1] = int32_t(s[1] * g.stride[0] - g.padding[0] + kz * g.dilation[0]);
            s[2] = int32_t(s[2] * g.stride[1] - g.padding[1] + ky * g.dilation[1]);
            s[3] = int32_t(s[3] * g.stride[2] - g.padding[2] + kx * g.dilation[2]);
          }
          auto it = in.find(s);
          if (it == in.end()) continue;
          ++r.pairs[k];
          for (int64_t c = 0; c < p.cout; ++c)
            for (int64_t ci = 0; ci < p.cin; ++ci)
              r.feats[o * p.cout + c] += double(d.weight[(c * K + k) * p.cin + ci]) * d.features[it->second * p.cin + ci];
        }
    if (p.act == Activation::kReLU)
      for (int64_t c = 0; c < p.cout; ++c) r.feats[o * p.cout + c] = std::max(0.0, r.feats[o * p.cout + c]);
  }
  return r;
}

std::vector<float> run(const Problem& p, const Data& d, const Executor& ex, Rulebook* rb_out = nullptr) {
  Rulebook rb = build_rulebook(d.indices.data(), d.n, p.g, ex);
  std::vector<float> out(rb.num_out * p.cout, -123.f);
  sparse_conv_forward(d.features.data(), p.cin, d.weight.data(), p.cout, p.bias ? d.bias.data() : nullptr, rb, p.act,
                      out.data(), ex);
  if (rb_out) *rb_out = std::move(rb);
  return out;
}

void check_problem(const char* name, const Problem& p, uint32_t seed) {
  const Data d = make_data(p, seed);
  const Reference ref = reference(p, d);
  const ThreadPoolExecutor pool(3);
  Rulebook rb;
  const std::vector<float> out = run(p, d, pool, &rb);
  CHECK(rb.num_out == int64_t(ref.out.size()), "%s: %lld outputs, reference %zu", name, (long long)rb.num_out, ref.out.size());
  if (rb.num_out != int64_t(ref.out.size())) return;
  bool same_sites = true;
  for (size_t o = 0; o < ref.out.size(); ++o)
    for (int a = 0; a < 4; ++a) same_sites &= rb.out_indices[4 * o + a] == ref.out[o][a];
  CHECK(same_sites, "%s: output sites differ from the reference (order included)", name);
  CHECK(rb.pair_counts() == ref.pairs, "%s: pair counts differ", name);
  double err = 0;
  for (size_t i = 0; i < out.size(); ++i) err = std::max(err, std::abs(out[i] - ref.feats[i]));
  CHECK(err < 1e-4, "%s: max abs error %g", name, err);
  // bitwise identical for any thread count
  const SerialExecutor serial;
  const ThreadPoolExecutor two(2);
  CHECK(run(p, d, serial) == out, "%s: serial result differs from 3 threads", name);
  CHECK(run(p, d, two) == out, "%s: 2-thread result differs from 3 threads", name);
  // reused buffers (rulebook, scratch, packed weights) from an unrelated, larger problem
  {
    static Rulebook shared_rb;
    static RulebookScratch shared_scratch;
    static PackedWeights shared_w;
    build_rulebook(d.indices.data(), d.n, p.g, pool, shared_rb, shared_scratch);
    pack_weights(d.weight.data(), p.cout, p.g.kernel_volume(), p.cin, shared_w);
    std::vector<float> again(shared_rb.num_out * p.cout);
    sparse_conv_forward(d.features.data(), shared_w, p.bias ? d.bias.data() : nullptr, shared_rb, p.act, again.data(),
                        pool);
    CHECK(shared_rb.out_indices == rb.out_indices && shared_rb.neighbors == rb.neighbors && again == out,
          "%s: result with reused buffers differs", name);
  }
  std::printf("ok   %-32s n=%-6lld m=%-6lld pairs=%-7lld err=%.2g\n", name, (long long)d.n, (long long)rb.num_out,
              [&] { long long s = 0; for (auto c : ref.pairs) s += c; return s; }(), err);
}

ConvGeometry geom(std::array<int64_t, 3> shape, std::array<int64_t, 3> k, std::array<int64_t, 3> s,
                  std::array<int64_t, 3> pad, std::array<int64_t, 3> dil, bool subm) {
  ConvGeometry g;
  g.in_shape = shape;
  g.kernel = k;
  g.stride = s;
  g.padding = pad;
  g.dilation = dil;
  g.subm = subm;
  return g;
}

void test_convs() {
  Problem p;
  p.g = geom({9, 17, 13}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, true);
  p.cin = 5, p.cout = 7, p.batch = 2, p.act = Activation::kReLU;
  check_problem("subm3 b2 5->7 relu", p, 1);
  p.g = geom({9, 17, 13}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, false);
  p.act = Activation::kNone;
  check_problem("conv3 s2 p1 b2 5->7", p, 2);
  p.g = geom({11, 16, 14}, {3, 3, 3}, {2, 2, 2}, {0, 1, 1}, {1, 1, 1}, false);
  p.cin = 16, p.cout = 32, p.batch = 1;
  check_problem("conv3 s2 p(0,1,1) 16->32", p, 3);
  p.g = geom({5, 12, 11}, {3, 1, 1}, {2, 1, 1}, {0, 0, 0}, {1, 1, 1}, false);
  p.cin = 32, p.cout = 24, p.density = 0.3;
  check_problem("conv(3,1,1) s(2,1,1) 32->24", p, 4);
  p.g = geom({10, 15, 15}, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {2, 2, 2}, true);
  p.cin = 8, p.cout = 16, p.density = 0.15, p.bias = false;
  check_problem("subm3 dil2 8->16 nobias", p, 5);
  p.g = geom({8, 9, 10}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, false);
  p.cin = 67, p.cout = 45, p.bias = true, p.act = Activation::kReLU;
  check_problem("conv2 s2 67->45 relu", p, 6);
  p.g = geom({7, 13, 19}, {1, 3, 5}, {1, 2, 3}, {0, 2, 1}, {1, 2, 1}, false);
  p.cin = 3, p.cout = 64, p.batch = 3, p.act = Activation::kNone;
  check_problem("conv(1,3,5) s(1,2,3) d(1,2,1)", p, 7);
  p.g = geom({6, 20, 20}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, false);
  p.cin = 33, p.cout = 17, p.batch = 2, p.density = 0.2;
  check_problem("conv3 s1 p1 (regular) 33->17", p, 8);
  p.g = geom({6, 40, 40}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, true);
  p.cin = 16, p.cout = 16, p.batch = 1, p.density = 0.3;
  check_problem("subm3 16->16 (several blocks)", p, 9);
  p.g = geom({7, 12, 11}, {4, 3, 2}, {1, 1, 1}, {0, 0, 0}, {1, 2, 1}, true);
  p.cin = 9, p.cout = 12, p.batch = 2, p.density = 0.25;
  check_problem("subm even kernel (4,3,2) d(1,2,1)", p, 12);
  p.g = geom({6, 9, 30}, {1, 1, 5}, {1, 1, 1}, {0, 0, 0}, {1, 1, 3}, true);
  p.cin = 4, p.cout = 5, p.batch = 1, p.density = 0.3;
  check_problem("subm (1,1,5) d(1,1,3)", p, 13);
  p.g = geom({4, 4, 4}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, true);
  p.density = 0.0;
  check_problem("empty subm", p, 10);
  p.g.subm = false, p.g.stride = {2, 2, 2};
  check_problem("empty conv", p, 11);
}

// The two regular-conv rulebook methods (bitmap of the output grid, sorted candidate pairs) give the
// same rulebook: random problems of several geometries and batch sizes, unsorted and sorted
// inputs, a single site, an empty set; and build_rulebook takes the sorting one on a huge, nearly
// empty grid.
void test_regular_methods_agree() {
  struct Case {
    std::array<int64_t, 3> shape, k, s, pad, dil;
    int64_t batch;
    double density;
  };
  const Case cases[] = {
      {{9, 17, 13}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, 2, 0.1},
      {{11, 16, 14}, {3, 3, 3}, {2, 2, 2}, {0, 1, 1}, {1, 1, 1}, 1, 0.2},
      {{5, 12, 11}, {3, 1, 1}, {2, 1, 1}, {0, 0, 0}, {1, 1, 1}, 3, 0.3},
      {{8, 9, 10}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, 1, 0.5},
      {{7, 13, 19}, {1, 3, 5}, {1, 2, 3}, {0, 2, 1}, {1, 2, 1}, 3, 0.1},
      {{6, 20, 20}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 2, 0.2},
      {{21, 80, 70}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, 4, 0.02},
      {{4, 4, 4}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, 1, 0.0},
  };
  int checked = 0;
  for (const Case& c : cases) {
    for (int variant = 0; variant < 4; ++variant) {
      Problem p;
      p.g = geom(c.shape, c.k, c.s, c.pad, c.dil, false);
      p.batch = c.batch, p.density = c.density;
      Data d = make_data(p, 100 + checked);
      if (variant == 3 && d.n > 1) d.n = 1, d.indices.resize(4);  // a single site
      if (variant == 1 && d.n > 1) {  // one batch index, above 0: the bitmap spans the batches below it
        std::vector<Site> sites(d.n);
        for (int64_t i = 0; i < d.n; ++i) {
          std::memcpy(sites[i].data(), &d.indices[4 * i], 16);
          sites[i][0] = int32_t(c.batch + 1);
        }
        std::sort(sites.begin(), sites.end());
        sites.erase(std::unique(sites.begin(), sites.end()), sites.end());
        std::shuffle(sites.begin(), sites.end(), std::mt19937(7));
        d.n = int64_t(sites.size()), d.indices.resize(4 * d.n);
        for (int64_t i = 0; i < d.n; ++i) std::memcpy(&d.indices[4 * i], sites[i].data(), 16);
      }
      if (variant == 2) {                                       // sorted input (a previous layer's output)
        std::vector<Site> sites(d.n);
        for (int64_t i = 0; i < d.n; ++i) std::memcpy(sites[i].data(), &d.indices[4 * i], 16);
        std::sort(sites.begin(), sites.end());
        for (int64_t i = 0; i < d.n; ++i) std::memcpy(&d.indices[4 * i], sites[i].data(), 16);
      }
      Rulebook a, b;
      RulebookScratch sa, sb;
      a.num_in = b.num_in = d.n;
      a.kernel_volume = b.kernel_volume = p.g.kernel_volume();
      detail::regular_rulebook_bitmap(d.indices.data(), d.n, p.g, a, sa);
      detail::regular_rulebook_sorted(d.indices.data(), d.n, p.g, b, sb);
      CHECK(a.num_out == b.num_out && a.out_indices == b.out_indices && a.neighbors == b.neighbors,
            "regular rulebook methods differ: shape (%lld, %lld, %lld), batch %lld, variant %d, n=%lld",
            (long long)c.shape[0], (long long)c.shape[1], (long long)c.shape[2], (long long)c.batch, variant,
            (long long)d.n);
      ++checked;
    }
  }
  // huge, nearly empty grid: 4 sites in 2^33 cells; build_rulebook must not allocate a bitmap for it
  const ConvGeometry g = geom({2048, 2048, 2048}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, false);
  const std::vector<int32_t> sparse{0, 5, 7, 9, 0, 2000, 3, 1, 1, 5, 8, 9, 0, 6, 7, 9};
  Rulebook sorted;
  RulebookScratch ss;
  sorted.num_in = 4, sorted.kernel_volume = 27;
  detail::regular_rulebook_sorted(sparse.data(), 4, g, sorted, ss);
  RulebookScratch fresh;
  Rulebook built;
  build_rulebook(sparse.data(), 4, g, SerialExecutor(), built, fresh);
  CHECK(built.out_indices == sorted.out_indices && built.neighbors == sorted.neighbors && fresh.bits.empty(),
        "huge sparse grid: build_rulebook differs from the sorting method or allocated a bitmap (%zu words)",
        fresh.bits.size());
  std::printf("ok   regular rulebook: bitmap and sorting methods agree (%d problems)\n", checked);
}

void test_kernels_agree() {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<const detail::GemmKernel*> kernels{&detail::gemm_kernel_generic()};
#if defined(CLEAN_DEPLOY_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) kernels.push_back(&detail::gemm_kernel_avx2());
  if (__builtin_cpu_supports("avx512f")) kernels.push_back(&detail::gemm_kernel_avx512());
#endif
  for (int64_t cin : {1, 3, 16, 33}) {
    for (int64_t cout : {1, 7, 8, 9, 16, 20, 31, 32, 45, 64}) {
      const int64_t rows = 24, nin = 50;
      std::vector<float> a(nin * cin), w(cout * cin);
      for (auto& x : a) x = u(rng);
      for (auto& x : w) x = u(rng);
      std::vector<int32_t> pick(rows), dest(rows);
      for (int64_t i = 0; i < rows; ++i) pick[i] = rng() % nin, dest[i] = int32_t(i);
      std::shuffle(dest.begin(), dest.end(), rng);
      std::vector<std::vector<float>> results;
      for (const auto* k : kernels) {
        std::vector<float> c(rows * cout, 0.5f), packed(detail::packed_weight_size(cin, cout, k->nr)), zero(cin, 0.f);
        std::vector<float> dummy((cout + k->nr - 1) / k->nr * k->nr, 0.f);
        detail::pack_weight_panels(w.data(), cout, 1, cin, 0, k->nr, packed.data());
        std::vector<const float*> ar;
        std::vector<float*> cr;
        for (int64_t i = 0; i < rows; ++i) ar.push_back(a.data() + pick[i] * cin), cr.push_back(c.data() + dest[i] * cout);
        while (ar.size() % k->mr) ar.push_back(zero.data()), cr.push_back(dummy.data());
        k->accumulate(ar.data(), cr.data(), int64_t(ar.size()), packed.data(), cin, cout);
        results.push_back(c);
      }
      for (size_t k = 1; k < kernels.size(); ++k) {
        double err = 0;
        for (size_t i = 0; i < results[0].size(); ++i) err = std::max(err, double(std::abs(results[k][i] - results[0][i])));
        CHECK(err < 1e-4, "kernel %s vs generic, cin=%lld cout=%lld: max abs error %g", kernels[k]->name, (long long)cin,
              (long long)cout, err);
      }
    }
  }
  std::printf("ok   SGEMM kernels agree (%zu kernels; selected: %s)\n", kernels.size(), gemm_isa_name());
}

void test_radix_sort() {
  std::mt19937_64 rng(7);
  for (size_t n : {size_t(0), size_t(1), size_t(100), size_t(5000), size_t(100000)}) {
    for (int64_t range : {int64_t(1000), int64_t(1) << 40}) {
      std::vector<int64_t> keys(n);
      std::vector<int32_t> rows(n);
      for (size_t i = 0; i < n; ++i) keys[i] = int64_t(rng() % uint64_t(range)), rows[i] = int32_t(i);
      std::vector<std::pair<int64_t, int32_t>> ref(n);
      for (size_t i = 0; i < n; ++i) ref[i] = {keys[i], rows[i]};
      std::stable_sort(ref.begin(), ref.end(), [](auto& a, auto& b) { return a.first < b.first; });
      std::vector<int64_t> key_tmp;
      std::vector<int32_t> row_tmp;
      detail::radix_sort(keys, &rows, key_tmp, row_tmp);
      bool ok = true;
      for (size_t i = 0; i < n; ++i) ok &= keys[i] == ref[i].first && rows[i] == ref[i].second;
      CHECK(ok, "radix_sort n=%zu range=%lld", n, (long long)range);
    }
  }
  std::printf("ok   radix sort\n");
}

template <class F>
void expect_invalid(const char* name, F&& f, const char* needle) {
  try {
    f();
    CHECK(false, "%s: no exception", name);
  } catch (const std::invalid_argument& e) {
    CHECK(std::strstr(e.what(), needle) != nullptr, "%s: message '%s' lacks '%s'", name, e.what(), needle);
  }
}

void test_errors() {
  const SerialExecutor ex;
  const ConvGeometry g = geom({4, 5, 6}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, true);
  const std::vector<int32_t> out_of_range{0, 0, 0, 0, 0, 3, 5, 1};
  expect_invalid("out of range", [&] { build_rulebook(out_of_range.data(), 2, g, ex); }, "row 1");
  const std::vector<int32_t> negative_batch{-1, 0, 0, 0};
  expect_invalid("negative batch", [&] { build_rulebook(negative_batch.data(), 1, g, ex); }, "row 0");
  const std::vector<int32_t> dup{0, 1, 2, 3, 1, 1, 2, 3, 0, 1, 2, 3};
  expect_invalid("duplicate", [&] { build_rulebook(dup.data(), 3, g, ex); }, "rows 0 and 2");
  ConvGeometry strided = g;
  strided.subm = false, strided.stride = {2, 2, 2};
  expect_invalid("duplicate (regular, bitmap)", [&] { build_rulebook(dup.data(), 3, strided, ex); }, "rows 0 and 2");
  expect_invalid("duplicate (regular, sorting)", [&] {
    Rulebook rb;
    RulebookScratch s;
    rb.kernel_volume = 27;
    detail::regular_rulebook_sorted(dup.data(), 3, strided, rb, s);
  }, "rows 0 and 2");
  ConvGeometry bad = g;
  bad.stride = {2, 1, 1};
  expect_invalid("subm stride", [&] { bad.validate(); }, "stride");
  bad = g;
  bad.subm = false, bad.kernel = {7, 3, 3}, bad.padding = {0, 0, 0};
  expect_invalid("kernel too big", [&] { bad.validate(); }, "does not fit");
  expect_invalid("activation", [&] { parse_activation("gelu"); }, "relu");
  std::printf("ok   errors\n");
}

}  // namespace

int main() {
  unsetenv("CLEAN_DEPLOY_REGULAR_RULEBOOK");  // the tests expect the library's own choice of method
  test_radix_sort();
  test_kernels_agree();
  test_convs();
  test_regular_methods_agree();
  test_errors();
  if (g_failures) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("all passed (SGEMM kernel: %s)\n", gemm_isa_name());
  return 0;
}
