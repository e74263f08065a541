// Portable int8 micro-kernel (any CPU): plain loops over [cout][cin] weights, exact int32 sums.
#include "int8_kernels.h"
#include "int8_requant.h"

namespace clean_deploy {
namespace detail {

namespace {

void accumulate(const int8_t* const* a_rows, int32_t* const* c_rows, int64_t n, const int8_t* w,
                const int32_t* /*comp*/, int64_t cin, int64_t cout) {
  for (int64_t i = 0; i < n; ++i) {
    const int8_t* a = a_rows[i];
    int32_t* c = c_rows[i];
    for (int64_t co = 0; co < cout; ++co) {
      const int8_t* wr = w + co * cin;
      int32_t s = 0;
      for (int64_t ci = 0; ci < cin; ++ci) s += static_cast<int32_t>(a[ci]) * static_cast<int32_t>(wr[ci]);
      c[co] += s;
    }
  }
}

}  // namespace

const Int8Kernel& int8_kernel_generic() {
  static const Int8Kernel k{"generic", 1, Int8Layout::kRowMajor, false, accumulate, 0, 0, nullptr, requantize_rows};
  return k;
}

}  // namespace detail
}  // namespace clean_deploy
