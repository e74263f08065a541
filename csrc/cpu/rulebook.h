// Internal pieces of the rulebook builder (csrc/cpu/rulebook.cpp), exposed for the C++ tests.
//
// Coordinates are packed into int64 keys ((b * D + z) * H + y) * W + x, which order sites by
// (b, z, y, x). No hash table is needed:
//  - regular convs: every input i emits its (output site o, offset k) pairs directly (o * s - p +
//    k * d = i per axis). On a grid of moderate size (at most 256 output cells per input) they
//    mark a bitmap of the output cells; the marked cells in order are the output sites, sorted, and
//    a pair's output row is the number of marked cells below it (prefix popcounts): no sort at all
//    (on the deployed student's 3x3x3 downsampling layers 1.2-1.5x faster than sorting). On finer or emptier grids
//    a radix sort of the pairs by output key groups them instead. Both give the same rulebook.
//  - submanifold convs: the input keys are radix-sorted once, and neighbours are found by merging:
//    for a fixed kernel offset the neighbour key is an increasing function of the site, so walking
//    the sites in sorted order moves one cursor per kernel line forward through the sorted keys
//    (sequential memory access). With an odd kernel only half of the offsets are searched: the
//    other half are the same pairs mirrored. On SECOND's layers this is 1.6-1.8x faster than
//    probing an open-addressing hash table of the keys (same mirroring).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "clean_deploy/sparse_conv.h"

namespace clean_deploy {
namespace detail {

// Packs (b, z, y, x) of a grid of spatial shape (D, H, W) into an int64 key and back.
struct KeyPacker {
  int64_t d, h, w;
  explicit KeyPacker(const std::array<int64_t, 3>& shape) : d(shape[0]), h(shape[1]), w(shape[2]) {}
  int64_t pack(int64_t b, int64_t z, int64_t y, int64_t x) const { return ((b * d + z) * h + y) * w + x; }
  void unpack(int64_t key, int32_t* bzyx) const {
    bzyx[3] = static_cast<int32_t>(key % w);
    key /= w;
    bzyx[2] = static_cast<int32_t>(key % h);
    key /= h;
    bzyx[1] = static_cast<int32_t>(key % d);
    bzyx[0] = static_cast<int32_t>(key / d);
  }
};

// Throws std::invalid_argument naming the first row of indices (n x 4) outside the grid of spatial
// shape `shape` (or with a negative or huge batch index).
void check_sites(const int32_t* indices, int64_t n, const std::array<int64_t, 3>& shape);

// check_sites, then sorts the sites by key into s.keys (ascending) and s.rows (s.rows[i] = input
// row of s.keys[i]); throws std::invalid_argument for duplicate sites.
void sort_sites(const int32_t* indices, int64_t n, const std::array<int64_t, 3>& shape, RulebookScratch& s);

// Output sites and neighbour table of a regular conv (rb.num_in, kernel_volume already set): the
// bitmap method when the output grid of the batches present has at most 256 cells per input, else
// the sorting one. The two are exposed for the tests, which check that they agree.
void regular_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& g, Rulebook& rb, RulebookScratch& s);
void regular_rulebook_bitmap(const int32_t* indices, int64_t n, const ConvGeometry& g, Rulebook& rb,
                             RulebookScratch& s);
void regular_rulebook_sorted(const int32_t* indices, int64_t n, const ConvGeometry& g, Rulebook& rb,
                             RulebookScratch& s);

// Neighbour table of a submanifold conv (rb.out_indices = the inputs, already set).
void submanifold_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& g, const Executor& executor,
                          Rulebook& rb, RulebookScratch& s);

}  // namespace detail
}  // namespace clean_deploy
