// Stable LSD radix sort of non-negative int64 keys with an optional int32 payload (radix_sort.h).
#include "radix_sort.h"

#include <algorithm>
#include <numeric>

namespace clean_deploy {
namespace detail {

namespace {
constexpr int kMaxDigitBits = 12;  // 4096 counters: the histogram stays in L1
constexpr size_t kSmall = 256;     // below this, a comparison sort is faster
}  // namespace

void radix_sort(std::vector<int64_t>& keys, std::vector<int32_t>* rows, std::vector<int64_t>& key_tmp,
                std::vector<int32_t>& row_tmp) {
  const size_t n = keys.size();
  if (std::is_sorted(keys.begin(), keys.end())) return;
  if (n <= kSmall) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
    std::vector<int64_t> k2(n);
    for (size_t i = 0; i < n; ++i) k2[i] = keys[order[i]];
    keys.swap(k2);
    if (rows) {
      std::vector<int32_t> r2(n);
      for (size_t i = 0; i < n; ++i) r2[i] = (*rows)[order[i]];
      rows->swap(r2);
    }
    return;
  }
  const int64_t max_key = *std::max_element(keys.begin(), keys.end());
  int bits = 0;
  while (bits < 63 && (max_key >> bits) != 0) ++bits;
  // as few passes as 12-bit digits allow, with the bits spread evenly over them
  const int passes = (bits + kMaxDigitBits - 1) / kMaxDigitBits;
  const int digit_bits = passes ? (bits + passes - 1) / passes : 1;
  const int64_t mask = (int64_t{1} << digit_bits) - 1;
  key_tmp.resize(n);
  if (rows) row_tmp.resize(n);
  std::vector<size_t> count(static_cast<size_t>(mask + 1));
  for (int shift = 0; shift < bits; shift += digit_bits) {
    std::fill(count.begin(), count.end(), 0);
    for (size_t i = 0; i < n; ++i) ++count[(keys[i] >> shift) & mask];
    size_t sum = 0;
    for (auto& c : count) {
      const size_t here = c;
      c = sum;
      sum += here;
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t dst = count[(keys[i] >> shift) & mask]++;
      key_tmp[dst] = keys[i];
      if (rows) row_tmp[dst] = (*rows)[i];
    }
    keys.swap(key_tmp);
    if (rows) rows->swap(row_tmp);
  }
}

}  // namespace detail
}  // namespace clean_deploy
