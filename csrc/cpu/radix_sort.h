// Stable LSD radix sort of non-negative int64 keys (optionally carrying an int32 payload), used to
// order voxel coordinates packed into int64 keys. Only the digits up to the largest key's highest
// bit are sorted, so grid-sized keys (~30 bits) take three passes.
#pragma once

#include <cstdint>
#include <vector>

namespace clean_deploy {
namespace detail {

// Sorts keys ascending (stable); if rows is not null it is permuted along. Keys must be >= 0.
// key_tmp / row_tmp are scratch (resized as needed; pass the same vectors to reuse memory).
void radix_sort(std::vector<int64_t>& keys, std::vector<int32_t>* rows, std::vector<int64_t>& key_tmp,
                std::vector<int32_t>& row_tmp);

}  // namespace detail
}  // namespace clean_deploy
