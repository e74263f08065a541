// Rulebooks shared between sparse-conv nodes: consecutive submanifold layers of a backbone see the
// same active sites, so their rulebooks are identical (spconv shares them through `indice_key`).
// The ONNX graph has no such key, so the ops look a rulebook up by its inputs instead: the same
// geometry and bytewise-identical indices give the cached rulebook (a hit costs one memcmp of the
// indices, far less than building it). Only submanifold rulebooks are cached. Library-wide,
// thread-safe, a few entries (LRU). CLEAN_DEPLOY_RULEBOOK_CACHE=0 turns it off (benchmarks).
#pragma once

#include <memory>

#include "clean_deploy/sparse_conv.h"

namespace clean_deploy {
namespace ort {

// The rulebook of a conv over `indices` (n x 4). Submanifold: the cached one, or one built and
// cached; `hold` keeps it alive while the caller uses it. Otherwise built into `own` (the caller's
// pooled buffers) and returned.
const Rulebook& acquire_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& geometry,
                                 const Executor& executor, Rulebook& own, RulebookScratch& scratch,
                                 std::shared_ptr<const Rulebook>& hold);

// Submanifold lookups since the library was loaded: served from the cache / built.
void rulebook_cache_stats(int64_t* hits, int64_t* misses);

}  // namespace ort
}  // namespace clean_deploy
