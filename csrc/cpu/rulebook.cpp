// Rulebook of a sparse conv (see rulebook.h for the method): input validation, output sites and
// pairs of regular/strided convs, the neighbour table of submanifold convs (in parallel over
// chunks of sites), and the geometry checks.
#include "rulebook.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "radix_sort.h"

namespace clean_deploy {
namespace detail {

namespace {

std::string triple(const std::array<int64_t, 3>& a) {
  std::ostringstream s;
  s << "(" << a[0] << ", " << a[1] << ", " << a[2] << ")";
  return s.str();
}

std::string site(const int32_t* r) {
  std::ostringstream s;
  s << "(" << r[0] << ", " << r[1] << ", " << r[2] << ", " << r[3] << ")";
  return s.str();
}

[[noreturn]] void duplicate_error(const int32_t* indices, int32_t a, int32_t b) {
  if (a > b) std::swap(a, b);
  std::ostringstream msg;
  msg << "indices rows " << a << " and " << b << " are the same site (batch, z, y, x) " << site(indices + 4 * a)
      << "; active sites must be unique";
  throw std::invalid_argument(msg.str());
}

// Regular convs use the bitmap while the output grid has at most this many cells per input. At ~70
// (the student's first strided layer on a whole front half-cloud; deeper layers have 2-12, a
// camera-cropped cloud ~180 at the first) it is 1.4x faster than sorting
// for one frame and 1.8x for a batch of 4; at ~540 (a 0.05 m grid) the two are even for one frame
// and sorting wins for a batch of 4; at ~1800 sorting is 2x faster (2026-12-02, AMD EPYC, the
// synthetic test frames' sites spread over finer grids; benchmarks/results/rulebook_cpu.md has the
// deployed student's layers on field-of-view-cropped frames: 1.2-1.5x on the 3x3x3 ones).
constexpr int64_t kBitmapBitsPerInput = 256;

// First position p >= from with keys[p] >= target (keys ascending): a few linear steps, since the
// cursors usually move little, then binary search.
inline int64_t advance(const int64_t* keys, int64_t n, int64_t from, int64_t target) {
  for (int i = 0; i < 8; ++i, ++from) {
    if (from >= n || keys[from] >= target) return from;
  }
  return std::lower_bound(keys + from, keys + n, target) - keys;
}

// Population count without the popcnt instruction (the library is built for baseline x86-64, where
// __builtin_popcountll is a libgcc call); a handful of ALU operations, inlined.
inline int64_t popcount64(uint64_t v) {
  v = v - ((v >> 1) & 0x5555555555555555ull);
  v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
  v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return static_cast<int64_t>((v * 0x0101010101010101ull) >> 56);
}

// Bitmap of the cells of a grid with the per-word prefix counts of its set bits: the rank of a set
// cell (the number of set cells before it) is its position among the set cells in key order.
struct RankedBitmap {
  const uint64_t* bits;
  const int32_t* rank;
  int64_t rank_of(int64_t key) const {
    return rank[key >> 6] + popcount64(bits[key >> 6] & ((uint64_t{1} << (key & 63)) - 1));
  }
};

// Fills s.rank with the prefix counts of s.bits (words long); returns the number of set bits.
int64_t rank_words(RulebookScratch& s, int64_t words) {
  s.rank.resize(static_cast<size_t>(words));
  int64_t m = 0;
  for (int64_t w = 0; w < words; ++w) {
    s.rank[w] = static_cast<int32_t>(m);
    m += popcount64(s.bits[w]);
    if (m > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("too many sites for one conv call");
  }
  return m;
}

int64_t max_batch_index(const int32_t* indices, int64_t n) {
  int64_t b = 0;
  for (int64_t i = 0; i < n; ++i) b = std::max<int64_t>(b, indices[4 * i]);
  return b;
}

// Whether the bitmap method is the cheaper one: its bitmap over the output cells of the batches
// present costs at most kBitmapBitsPerInput bits per input (the typical LiDAR grid), and its per-axis
// tap tables stay small next to the sites. In double: a valid geometry's cell count can exceed int64.
bool use_bitmap(const int32_t* indices, int64_t n, const ConvGeometry& g) {
  if (n <= 0) return false;
  const auto out = g.out_shape();
  const double cells = static_cast<double>(out[0]) * static_cast<double>(out[1]) * static_cast<double>(out[2]);
  double taps = 0;
  for (int a = 0; a < 3; ++a) taps += static_cast<double>(g.in_shape[a]) * static_cast<double>(g.kernel[a]);
  return cells * static_cast<double>(max_batch_index(indices, n) + 1) <= static_cast<double>(kBitmapBitsPerInput) * n &&
         taps <= 16.0 * static_cast<double>(n) + 65536.0;
}

constexpr int64_t kChunk = 1024;  // sites per neighbour-search task

}  // namespace

void check_sites(const int32_t* indices, int64_t n, const std::array<int64_t, 3>& shape) {
  // keys must stay below 2^62: bound the batch index by the grid size
  const int64_t cells = shape[0] * shape[1] * shape[2];
  const int64_t max_batch = std::min<int64_t>(std::numeric_limits<int64_t>::max() / 4 / std::max<int64_t>(cells, 1),
                                              std::numeric_limits<int32_t>::max());
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* r = indices + 4 * i;
    if (r[0] < 0 || r[0] > max_batch || r[1] < 0 || r[1] >= shape[0] || r[2] < 0 || r[2] >= shape[1] || r[3] < 0 ||
        r[3] >= shape[2]) {
      std::ostringstream msg;
      msg << "indices row " << i << " = (batch, z, y, x) " << site(r) << " lies outside spatial_shape "
          << triple(shape) << " (or has a negative batch index)";
      throw std::invalid_argument(msg.str());
    }
  }
}

void sort_sites(const int32_t* indices, int64_t n, const std::array<int64_t, 3>& shape, RulebookScratch& s) {
  check_sites(indices, n, shape);
  s.keys.resize(static_cast<size_t>(n));
  s.rows.resize(static_cast<size_t>(n));
  const KeyPacker pk(shape);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* r = indices + 4 * i;
    s.keys[i] = pk.pack(r[0], r[1], r[2], r[3]);
    s.rows[i] = static_cast<int32_t>(i);
  }
  radix_sort(s.keys, &s.rows, s.key_tmp, s.row_tmp);
  for (int64_t i = 1; i < n; ++i)
    if (s.keys[i] == s.keys[i - 1]) duplicate_error(indices, s.rows[i - 1], s.rows[i]);
}

void regular_rulebook_sorted(const int32_t* indices, int64_t n, const ConvGeometry& g, Rulebook& rb,
                             RulebookScratch& s) {
  check_sites(indices, n, g.in_shape);
  const auto out = g.out_shape();
  const KeyPacker pk(out);
  const int64_t K = rb.kernel_volume;
  // 1. every input emits its (output key, offset) pairs: per axis, the o and k with
  //    o * s - p + k * d == i and 0 <= o < out
  std::vector<int64_t>& keys = s.keys;
  std::vector<int32_t>&cand_row = s.cand_row, &cand_k = s.cand_k, &order = s.rows;
  keys.clear(), cand_row.clear(), cand_k.clear();
  size_t per_input = 1;
  for (int a = 0; a < 3; ++a)
    per_input *= static_cast<size_t>(std::min<int64_t>(g.kernel[a], (g.kernel[a] - 1) * g.dilation[a] / g.stride[a] + 1));
  keys.reserve(static_cast<size_t>(n) * per_input);
  cand_row.reserve(keys.capacity());
  cand_k.reserve(keys.capacity());
  std::array<std::vector<int64_t>, 3> oc, kc;
  for (int a = 0; a < 3; ++a) oc[a].resize(static_cast<size_t>(g.kernel[a])), kc[a].resize(static_cast<size_t>(g.kernel[a]));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* r = indices + 4 * i;
    int cnt[3];
    for (int a = 0; a < 3; ++a) {
      int c = 0;
      for (int64_t k = 0; k < g.kernel[a]; ++k) {
        const int64_t t = r[a + 1] + g.padding[a] - k * g.dilation[a];
        if (t < 0) break;
        if (t % g.stride[a] == 0 && t / g.stride[a] < out[a]) oc[a][c] = t / g.stride[a], kc[a][c++] = k;
      }
      cnt[a] = c;
    }
    for (int a = cnt[0] - 1; a >= 0; --a)  // o decreases with k: emit in increasing key order
      for (int b = cnt[1] - 1; b >= 0; --b)
        for (int c = cnt[2] - 1; c >= 0; --c) {
          keys.push_back(pk.pack(r[0], oc[0][a], oc[1][b], oc[2][c]));
          cand_row.push_back(static_cast<int32_t>(i));
          cand_k.push_back(static_cast<int32_t>((kc[0][a] * g.kernel[1] + kc[1][b]) * g.kernel[2] + kc[2][c]));
        }
  }
  if (keys.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw std::invalid_argument("too many (input, output) pairs for one conv call");
  // 2. group by output key (stable radix sort of the candidate ids)
  order.resize(keys.size());
  for (size_t c = 0; c < order.size(); ++c) order[c] = static_cast<int32_t>(c);
  radix_sort(keys, &order, s.key_tmp, s.row_tmp);
  // 3. distinct keys = sorted output sites; each candidate is one pair
  int64_t m = 0;
  for (size_t c = 0; c < keys.size(); ++c) m += c == 0 || keys[c] != keys[c - 1];
  rb.num_out = m;
  rb.out_indices.resize(static_cast<size_t>(4 * m));
  rb.neighbors.assign(static_cast<size_t>(m * K), -1);
  int64_t o = -1;
  for (size_t c = 0; c < keys.size(); ++c) {
    if (c == 0 || keys[c] != keys[c - 1]) pk.unpack(keys[c], rb.out_indices.data() + 4 * ++o);
    int32_t& slot = rb.neighbors[o * K + cand_k[order[c]]];
    // two inputs reaching the same output through the same offset are the same site
    if (slot >= 0) duplicate_error(indices, slot, cand_row[order[c]]);
    slot = cand_row[order[c]];
  }
}

namespace {

// Per axis, the (output coordinate, kernel tap) pairs of every input coordinate: the o and k with
// o * s - p + k * d == i and 0 <= o < out, in decreasing o (increasing k) order.
struct AxisTaps {
  std::vector<int32_t> start;  // in_shape + 1 offsets into o / k
  std::vector<int32_t> o, k;
  void build(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil, int64_t out) {
    start.assign(static_cast<size_t>(in + 1), 0);
    o.clear(), k.clear();
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t kk = 0; kk < kernel; ++kk) {
        const int64_t t = i + pad - kk * dil;
        if (t < 0) break;
        if (t % stride == 0 && t / stride < out) o.push_back(static_cast<int32_t>(t / stride)), k.push_back(static_cast<int32_t>(kk));
      }
      start[static_cast<size_t>(i + 1)] = static_cast<int32_t>(o.size());
    }
  }
};

// Calls f(output key, kernel offset) for every (output, offset) pair of input row r.
template <class F>
inline void for_each_candidate(const int32_t* r, const std::array<AxisTaps, 3>& t, const KeyPacker& pk,
                               const ConvGeometry& g, F&& f) {
  const int32_t z0 = t[0].start[r[1]], z1 = t[0].start[r[1] + 1];
  const int32_t y0 = t[1].start[r[2]], y1 = t[1].start[r[2] + 1];
  const int32_t x0 = t[2].start[r[3]], x1 = t[2].start[r[3] + 1];
  for (int32_t a = z0; a < z1; ++a)
    for (int32_t b = y0; b < y1; ++b) {
      const int64_t line = pk.pack(r[0], t[0].o[a], t[1].o[b], 0);
      const int64_t kline = (t[0].k[a] * g.kernel[1] + t[1].k[b]) * g.kernel[2];
      for (int32_t c = x0; c < x1; ++c) f(line + t[2].o[c], kline + t[2].k[c]);
    }
}

}  // namespace

void regular_rulebook_bitmap(const int32_t* indices, int64_t n, const ConvGeometry& g, Rulebook& rb,
                             RulebookScratch& s) {
  check_sites(indices, n, g.in_shape);
  const auto out = g.out_shape();
  const KeyPacker pk(out);
  const int64_t K = rb.kernel_volume;
  const int64_t words = ((max_batch_index(indices, n) + 1) * out[0] * out[1] * out[2] + 63) / 64;
  std::array<AxisTaps, 3> taps;
  for (int a = 0; a < 3; ++a) taps[a].build(g.in_shape[a], g.kernel[a], g.stride[a], g.padding[a], g.dilation[a], out[a]);
  // 1. mark every output cell reached by an input
  s.bits.assign(static_cast<size_t>(words), 0);
  uint64_t* bw = s.bits.data();
  for (int64_t i = 0; i < n; ++i)
    for_each_candidate(indices + 4 * i, taps, pk, g, [&](int64_t key, int64_t) { bw[key >> 6] |= uint64_t{1} << (key & 63); });
  // 2. the marked cells in key order are the output sites, sorted
  const int64_t m = rank_words(s, words);
  rb.num_out = m;
  rb.out_indices.resize(static_cast<size_t>(4 * m));
  int32_t* oi = rb.out_indices.data();
  for (int64_t w = 0; w < words; ++w)
    for (uint64_t v = bw[w]; v; v &= v - 1, oi += 4) pk.unpack(w * 64 + __builtin_ctzll(v), oi);
  // 3. each (input, offset) pair into its output's row: the output's rank
  rb.neighbors.assign(static_cast<size_t>(m * K), -1);
  int32_t* nbr = rb.neighbors.data();
  const RankedBitmap bm{bw, s.rank.data()};
  for (int64_t i = 0; i < n; ++i)
    for_each_candidate(indices + 4 * i, taps, pk, g, [&](int64_t key, int64_t k) {
      int32_t& slot = nbr[bm.rank_of(key) * K + k];
      // two inputs reaching the same output through the same offset are the same site
      if (slot >= 0) duplicate_error(indices, slot, static_cast<int32_t>(i));
      slot = static_cast<int32_t>(i);
    });
}

void regular_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& g, Rulebook& rb, RulebookScratch& s) {
  // CLEAN_DEPLOY_REGULAR_RULEBOOK=sort forces the sorting method (benchmarks/rulebook_cpu.py); read
  // per call, a few ns next to a build
  const char* force = std::getenv("CLEAN_DEPLOY_REGULAR_RULEBOOK");
  const bool sort_only = force && std::strcmp(force, "sort") == 0;
  if (!sort_only && use_bitmap(indices, n, g))  // (both methods check the sites)
    regular_rulebook_bitmap(indices, n, g, rb, s);
  else
    regular_rulebook_sorted(indices, n, g, rb, s);
}

void submanifold_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& g, const Executor& executor,
                          Rulebook& rb, RulebookScratch& s) {
  sort_sites(indices, n, g.in_shape, s);
  const int64_t K = rb.kernel_volume;
  rb.neighbors.assign(static_cast<size_t>(n * K), -1);
  if (n == 0) return;
  // the kernel is centred: neighbour of site x at offset k is x + (k - K // 2) * d
  std::array<int64_t, 3> pad{};
  for (int a = 0; a < 3; ++a) pad[a] = (g.kernel[a] / 2) * g.dilation[a];
  const int64_t D = g.in_shape[0], H = g.in_shape[1], W = g.in_shape[2];
  const int64_t kD = g.kernel[0], kH = g.kernel[1], kW = g.kernel[2];
  // Odd kernels are symmetric: j is the neighbour of i at offset k iff i is the neighbour of j at
  // offset K-1-k. Search only the offsets before the centre and mirror each pair (every table
  // entry is still written by exactly one pair, so tasks never write the same element).
  const bool mirror = kD % 2 == 1 && kH % 2 == 1 && kW % 2 == 1;
  const int64_t centre_line = (kD / 2) * kH + kH / 2, centre = K / 2;
  const int64_t* skeys = s.keys.data();
  const int32_t* srows = s.rows.data();
  int32_t* nbr = rb.neighbors.data();
  const int64_t tasks = (n + kChunk - 1) / kChunk;

  executor.for_each(tasks, [&](int64_t task) {
    std::vector<int64_t> cursor(static_cast<size_t>(kD * kH), 0);  // one per kernel line (kz, ky)
    const int64_t end = std::min(n, (task + 1) * kChunk);
    for (int64_t si = task * kChunk; si < end; ++si) {
      const int64_t row = srows[si];  // the site visited si-th in sorted order
      const int32_t* o = indices + 4 * row;
      int32_t* nb = nbr + row * K;
      if (mirror) nb[centre] = static_cast<int32_t>(row);
      const int64_t xi0 = o[3] - pad[2];
      for (int64_t kz = 0; kz < kD; ++kz) {
        const int64_t zi = o[1] - pad[0] + kz * g.dilation[0];
        if (zi < 0) continue;
        if (zi >= D) break;
        for (int64_t ky = 0; ky < kH; ++ky) {
          const int64_t line = kz * kH + ky;
          if (mirror && line > centre_line) break;
          const int64_t yi = o[2] - pad[1] + ky * g.dilation[1];
          if (yi < 0) continue;
          if (yi >= H) break;
          const int64_t base = ((o[0] * D + zi) * H + yi) * W;
          const int64_t kx_end = mirror && line == centre_line ? kW / 2 : kW;
          // the line's cursor sits at the first key >= the line's first in-range x target; this
          // anchor never decreases over sorted sites, so the cursor only moves forward
          int64_t p = cursor[line] = advance(skeys, n, cursor[line], base + std::max<int64_t>(xi0, 0));
          for (int64_t kx = 0; kx < kx_end; ++kx) {
            const int64_t xi = xi0 + kx * g.dilation[2];
            if (xi < 0) continue;
            if (xi >= W) break;
            p = advance(skeys, n, p, base + xi);
            if (p == n) break;
            if (skeys[p] == base + xi) {
              const int64_t k = line * kW + kx;
              nb[k] = srows[p];
              if (mirror) nbr[srows[p] * K + (K - 1 - k)] = static_cast<int32_t>(row);
            }
          }
        }
      }
    }
  });
}

}  // namespace detail

namespace {

void check_min(const std::array<int64_t, 3>& v, const char* name, int64_t min_value) {
  for (int a = 0; a < 3; ++a) {
    if (v[a] < min_value) {
      std::ostringstream msg;
      msg << name << " must be >= " << min_value << " on every axis, got " << detail::triple(v);
      throw std::invalid_argument(msg.str());
    }
  }
}

}  // namespace

Activation parse_activation(const std::string& name) {
  if (name == "none") return Activation::kNone;
  if (name == "relu") return Activation::kReLU;
  throw std::invalid_argument("activation must be \"relu\" or \"none\", got \"" + name + "\"");
}

void ConvGeometry::validate() const {
  check_min(kernel, "kernel_size", 1);
  check_min(stride, "stride", 1);
  check_min(padding, "padding", 0);
  check_min(dilation, "dilation", 1);
  check_min(in_shape, "spatial_shape", 1);
  for (int a = 0; a < 3; ++a)
    if (in_shape[a] > (1 << 30) || kernel[a] > (1 << 10) || stride[a] > (1 << 30) || padding[a] > (1 << 30) ||
        dilation[a] > (1 << 20))
      throw std::invalid_argument("kernel_size/stride/padding/dilation/spatial_shape value too large");
  if (in_shape[0] * in_shape[1] * in_shape[2] > (int64_t{1} << 50))
    throw std::invalid_argument("spatial_shape " + detail::triple(in_shape) + " is too large");
  if (subm && (stride[0] != 1 || stride[1] != 1 || stride[2] != 1))
    throw std::invalid_argument("a submanifold conv (subm=1) needs stride (1, 1, 1), got " + detail::triple(stride));
  if (!subm) {
    const auto out = out_shape();
    for (int a = 0; a < 3; ++a) {
      if (out[a] < 1) {
        std::ostringstream msg;
        msg << "kernel_size " << detail::triple(kernel) << " with dilation " << detail::triple(dilation)
            << " and padding " << detail::triple(padding) << " does not fit spatial_shape "
            << detail::triple(in_shape) << " (output shape " << detail::triple(out) << ")";
        throw std::invalid_argument(msg.str());
      }
    }
  }
}

std::array<int64_t, 3> ConvGeometry::out_shape() const {
  if (subm) return in_shape;
  std::array<int64_t, 3> out{};
  for (int a = 0; a < 3; ++a) {
    const int64_t span = in_shape[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1;
    out[a] = span < 0 ? 0 : span / stride[a] + 1;
  }
  return out;
}

std::vector<int64_t> Rulebook::pair_counts() const {
  std::vector<int64_t> counts(static_cast<size_t>(kernel_volume), 0);
  for (int64_t o = 0; o < num_out; ++o) {
    const int32_t* nb = neighbors.data() + o * kernel_volume;
    for (int64_t k = 0; k < kernel_volume; ++k) counts[k] += nb[k] >= 0;
  }
  return counts;
}

void build_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& g, const Executor& executor, Rulebook& rb,
                    RulebookScratch& scratch) {
  g.validate();
  if (n < 0) throw std::invalid_argument("negative number of active sites");
  if (n > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("too many active sites for int32 rows");
  rb.num_in = n;
  rb.kernel_volume = g.kernel_volume();
  if (g.subm) {
    rb.num_out = n;
    rb.out_indices.assign(indices, indices + 4 * n);
    detail::submanifold_rulebook(indices, n, g, executor, rb, scratch);
  } else {
    detail::regular_rulebook(indices, n, g, rb, scratch);
  }
}

Rulebook build_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& g, const Executor& executor) {
  Rulebook rb;
  RulebookScratch scratch;
  build_rulebook(indices, n, g, executor, rb, scratch);
  return rb;
}

}  // namespace clean_deploy
