// Int8 sparse convolution forward on CPU (specification: clean_deploy/sparse_conv_int8.h).
//
// Same output-stationary design as the float kernel (sparse_conv.cpp): output rows in blocks, one
// task per block, so no two tasks write one row. Inside a block each kernel offset's gathered rows
// go through the int8 micro-kernel into a block-local int32 accumulator (exact), which is then
// requantised to int8 in one pass; narrow layers on VNNI instead keep each row's sums in registers
// across all offsets (Int8Kernel::accumulate_rows). Integer sums make the result independent of the
// ISA path, the block size and the thread count.
#include "clean_deploy/sparse_conv_int8.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemm_kernels.h"
#include "int8_kernels.h"

namespace clean_deploy {
namespace detail {

namespace {

const Int8Kernel& choose_int8() {
  const int cap = cpu_isa_cap();
#if defined(CLEAN_DEPLOY_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (cap >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vnni"))
    return int8_kernel_vnni();
  if (cap >= 1 && __builtin_cpu_supports("avx2")) return int8_kernel_avx2();
#else
  (void)cap;
#endif
  return int8_kernel_generic();
}

}  // namespace

const Int8Kernel& select_int8_kernel() {
  static const Int8Kernel& kernel = choose_int8();
  return kernel;
}

}  // namespace detail

namespace {

constexpr int64_t kBlockRows = 512;  // output rows per task
constexpr int64_t kPad = 16;         // C rows are padded to a multiple of 16 columns

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int64_t packed_offset_bytes(detail::Int8Layout layout, int64_t cin, int64_t cout) {
  switch (layout) {
    case detail::Int8Layout::kRowMajor: return cout * cin;
    case detail::Int8Layout::kPairs8: return round_up(cout, 8) * ((cin + 1) / 2) * 2 * 2;
    case detail::Int8Layout::kQuads16: return round_up(cout, 16) * round_up(cin, 4);
  }
  return 0;
}

struct Scratch {
  std::vector<const int8_t*> a;
  std::vector<int32_t*> c;
  std::vector<int32_t> acc;  // (kBlockRows + 1) x padded cout; the last row takes the padding rows
};

}  // namespace

void pack_weights_int8(const int8_t* weight, int64_t cout, int64_t kernel_volume, int64_t cin,
                       PackedWeightsInt8& packed) {
  if (cout < 0 || kernel_volume < 0 || cin < 0) throw std::invalid_argument("negative weight dimension");
  const detail::Int8Kernel& kern = detail::select_int8_kernel();
  packed.cout = cout;
  packed.kernel_volume = kernel_volume;
  packed.cin = cin;
  packed.offset_stride = packed_offset_bytes(kern.layout, cin, cout);
  packed.data.assign(static_cast<size_t>(packed.offset_stride * kernel_volume), 0);
  const int64_t cpad = round_up(cout, kPad);
  packed.comp.assign(kern.needs_comp ? static_cast<size_t>(kernel_volume * cpad) : 0, 0);
  packed.max_abs_weight_sum = 0;
  auto w = [&](int64_t co, int64_t k, int64_t ci) -> int32_t { return weight[(co * kernel_volume + k) * cin + ci]; };
  for (int64_t co = 0; co < cout; ++co) {
    int64_t s = 0;
    for (int64_t i = 0; i < kernel_volume * cin; ++i) s += std::abs(static_cast<int64_t>(weight[co * kernel_volume * cin + i]));
    packed.max_abs_weight_sum = std::max(packed.max_abs_weight_sum, s);
  }
  for (int64_t k = 0; k < kernel_volume; ++k) {
    int8_t* dst = packed.data.data() + k * packed.offset_stride;
    switch (kern.layout) {
      case detail::Int8Layout::kRowMajor:
        for (int64_t co = 0; co < cout; ++co)
          for (int64_t ci = 0; ci < cin; ++ci) dst[co * cin + ci] = static_cast<int8_t>(w(co, k, ci));
        break;
      case detail::Int8Layout::kPairs8: {
        const int64_t pairs = (cin + 1) / 2;
        int16_t* d = reinterpret_cast<int16_t*>(dst);  // vector<int8_t> storage is malloc-aligned
        for (int64_t co = 0; co < cout; ++co)
          for (int64_t p = 0; p < pairs; ++p)
            for (int64_t j = 0; j < 2; ++j) {
              const int64_t ci = 2 * p + j;
              d[((co / 8 * pairs + p) * 8 + co % 8) * 2 + j] = static_cast<int16_t>(ci < cin ? w(co, k, ci) : 0);
            }
        break;
      }
      case detail::Int8Layout::kQuads16: {
        const int64_t quads = (cin + 3) / 4;
        for (int64_t co = 0; co < cout; ++co)
          for (int64_t ci = 0; ci < cin; ++ci)
            dst[((co / 16 * quads + ci / 4) * 16 + co % 16) * 4 + ci % 4] = static_cast<int8_t>(w(co, k, ci));
        break;
      }
    }
    if (kern.needs_comp)
      for (int64_t co = 0; co < cout; ++co) {
        int32_t s = 0;
        for (int64_t ci = 0; ci < cin; ++ci) s += w(co, k, ci);
        packed.comp[k * cpad + co] = 128 * s;
      }
  }
}

std::vector<float> requant_multipliers(float x_scale, const float* w_scale, int64_t cout, float y_scale) {
  auto bad = [](float s) { return !(std::isfinite(s) && s > 0.0f); };
  if (bad(x_scale)) throw std::invalid_argument("x_scale must be finite and > 0, got " + std::to_string(x_scale));
  if (bad(y_scale)) throw std::invalid_argument("y_scale must be finite and > 0, got " + std::to_string(y_scale));
  std::vector<float> m(static_cast<size_t>(cout));
  for (int64_t co = 0; co < cout; ++co) {
    if (bad(w_scale[co]))
      throw std::invalid_argument("w_scale[" + std::to_string(co) + "] must be finite and > 0, got " +
                                  std::to_string(w_scale[co]));
    m[co] = static_cast<float>(static_cast<double>(x_scale) * static_cast<double>(w_scale[co]) /
                               static_cast<double>(y_scale));
    if (bad(m[co]))
      throw std::invalid_argument("x_scale * w_scale[" + std::to_string(co) + "] / y_scale is not a finite float");
  }
  return m;
}

void check_int8_accumulator(const PackedWeightsInt8& weight, const int32_t* bias) {
  int64_t b = 0;
  if (bias)
    for (int64_t co = 0; co < weight.cout; ++co) b = std::max(b, std::abs(static_cast<int64_t>(bias[co])));
  // |x| <= 128, so |acc| <= 128 * sum |w| + |bias|
  if (weight.max_abs_weight_sum * 128 + b > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("the int32 accumulator could overflow: 128 * max_co sum |weight| (" +
                                std::to_string(weight.max_abs_weight_sum) + " * 128) + max |bias| (" +
                                std::to_string(b) + ") must be < 2^31");
}

void sparse_conv_int8_forward(const int8_t* features, const PackedWeightsInt8& weight, const int32_t* bias,
                              const float* multipliers, const RulebookView& rb, Activation activation, int8_t* out,
                              const Executor& executor) {
  const int64_t M = rb.num_out, K = rb.kernel_volume, cin = weight.cin, cout = weight.cout;
  const detail::Int8Kernel& kern = detail::select_int8_kernel();
  if (weight.kernel_volume != K || weight.offset_stride != packed_offset_bytes(kern.layout, cin, cout) ||
      static_cast<int64_t>(weight.data.size()) != K * weight.offset_stride)
    throw std::invalid_argument("packed int8 weights do not match the rulebook's kernel volume or this CPU's kernel");
  if (M == 0 || cout == 0) return;
  check_int8_accumulator(weight, bias);

  const int mr = kern.mr;
  const int64_t cpad = round_up(cout, kPad);
  const std::vector<int8_t> zero_row(static_cast<size_t>(std::max<int64_t>(round_up(cin, 4), 4)), 0);
  const int32_t* nbr = rb.neighbors;
  const int8_t* wp = weight.data.data();
  const int64_t tasks = (M + kBlockRows - 1) / kBlockRows;
  const float lo = activation == Activation::kReLU ? 0.0f : -128.0f;
  // narrow layer on a kernel with a row-stationary form
  const bool row_stationary = kern.accumulate_rows && cpad <= 16 * kern.max_row_panels && cin <= kern.max_row_cin;

  executor.for_each(tasks, [&](int64_t task) {
    thread_local Scratch s;
    s.a.resize(static_cast<size_t>(kBlockRows + mr + 1));
    s.c.resize(static_cast<size_t>(kBlockRows + mr + 1));
    if (static_cast<int64_t>(s.acc.size()) < (kBlockRows + 1) * cpad) s.acc.resize(static_cast<size_t>((kBlockRows + 1) * cpad));
    const int64_t r0 = task * kBlockRows, r1 = std::min(M, r0 + kBlockRows);
    int32_t* acc = s.acc.data();
    int32_t* dummy = acc + kBlockRows * cpad;
    for (int64_t r = r0; r < r1; ++r) {
      int32_t* o = acc + (r - r0) * cpad;
      if (bias)
        std::copy(bias, bias + cout, o);
      else
        std::fill(o, o + cout, 0);
      std::fill(o + cout, o + cpad, 0);
    }
    if (row_stationary) {
      kern.accumulate_rows(features, nbr + r0 * K, K, r1 - r0, wp, weight.offset_stride, weight.comp.data(), cin,
                           cout, acc, cpad);
    } else {
      for (int64_t k = 0; k < K; ++k) {
        int64_t n = 0;
        for (int64_t r = r0; r < r1; ++r) {
          const int32_t j = nbr[r * K + k];
          s.a[n] = features + static_cast<int64_t>(j < 0 ? 0 : j) * cin;
          s.c[n] = acc + (r - r0) * cpad;
          n += j >= 0;
        }
        if (n == 0) continue;
        for (; n % mr; ++n) {
          s.a[n] = zero_row.data();
          s.c[n] = dummy;
        }
        kern.accumulate(s.a.data(), s.c.data(), n, wp + k * weight.offset_stride,
                        kern.needs_comp ? weight.comp.data() + k * cpad : nullptr, cin, cout);
      }
    }
    kern.requantize(acc, cpad, r1 - r0, cout, multipliers, lo, out + r0 * cout);
  });
}

const char* int8_isa_name() { return detail::select_int8_kernel().name; }

}  // namespace clean_deploy
