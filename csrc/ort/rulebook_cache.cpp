// Rulebook cache of the sparse-conv ops (see rulebook_cache.h).
#include "rulebook_cache.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace clean_deploy {
namespace ort {

namespace {

constexpr size_t kEntries = 4;

std::atomic<int64_t> g_hits{0}, g_misses{0};

bool same_geometry(const ConvGeometry& a, const ConvGeometry& b) {
  return a.kernel == b.kernel && a.stride == b.stride && a.padding == b.padding && a.dilation == b.dilation &&
         a.in_shape == b.in_shape && a.subm == b.subm;
}

class Cache {
 public:
  std::shared_ptr<const Rulebook> find(const int32_t* indices, int64_t n, const ConvGeometry& g) {
    std::lock_guard<std::mutex> lock(mu_);
    for (Entry& e : entries_) {
      if (e.n == n && same_geometry(e.geometry, g) &&
          (n == 0 || std::memcmp(e.indices.data(), indices, sizeof(int32_t) * 4 * static_cast<size_t>(n)) == 0)) {
        e.last_use = ++clock_;
        return e.rulebook;
      }
    }
    return nullptr;
  }

  // A Rulebook to build into: the least recently used entry's when nobody holds it (its buffers are
  // reused, saving allocations and page faults), else a new one.
  std::shared_ptr<Rulebook> recycle() {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() < kEntries) return std::make_shared<Rulebook>();
    size_t lru = 0;
    for (size_t i = 1; i < entries_.size(); ++i)
      if (entries_[i].last_use < entries_[lru].last_use) lru = i;
    Entry& e = entries_[lru];
    std::shared_ptr<Rulebook> rb = e.rulebook.use_count() == 1 ? e.rulebook : std::make_shared<Rulebook>();
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(lru));
    return rb;
  }

  void insert(const int32_t* indices, int64_t n, const ConvGeometry& g, std::shared_ptr<Rulebook> rb) {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() >= kEntries) {
      size_t lru = 0;
      for (size_t i = 1; i < entries_.size(); ++i)
        if (entries_[i].last_use < entries_[lru].last_use) lru = i;
      entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(lru));
    }
    Entry e;
    e.geometry = g;
    e.n = n;
    e.indices.assign(indices, indices + 4 * n);
    e.rulebook = std::move(rb);
    e.last_use = ++clock_;
    entries_.push_back(std::move(e));
  }

 private:
  struct Entry {
    ConvGeometry geometry;
    int64_t n = 0;
    std::vector<int32_t> indices;
    std::shared_ptr<Rulebook> rulebook;
    uint64_t last_use = 0;
  };
  std::mutex mu_;
  std::vector<Entry> entries_;
  uint64_t clock_ = 0;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: may be used until the process ends
  return *c;
}

bool enabled() {
  static const bool on = [] {
    const char* env = std::getenv("CLEAN_DEPLOY_RULEBOOK_CACHE");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return on;
}

}  // namespace

const Rulebook& acquire_rulebook(const int32_t* indices, int64_t n, const ConvGeometry& geometry,
                                 const Executor& executor, Rulebook& own, RulebookScratch& scratch,
                                 std::shared_ptr<const Rulebook>& hold) {
  if (!enabled() || !geometry.subm) {
    build_rulebook(indices, n, geometry, executor, own, scratch);
    return own;
  }
  if ((hold = cache().find(indices, n, geometry))) {
    ++g_hits;
    return *hold;
  }
  ++g_misses;
  std::shared_ptr<Rulebook> rb = cache().recycle();
  build_rulebook(indices, n, geometry, executor, *rb, scratch);
  cache().insert(indices, n, geometry, rb);
  hold = std::move(rb);
  return *hold;
}

void rulebook_cache_stats(int64_t* hits, int64_t* misses) {
  *hits = g_hits.load();
  *misses = g_misses.load();
}

}  // namespace ort
}  // namespace clean_deploy
