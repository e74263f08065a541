// Standalone executors of clean_deploy/parallel.h: serial, and a small persistent std::thread pool
// (used by the C++ tests and tools; the ONNX Runtime op uses ORT's own intra-op pool instead).
#include "clean_deploy/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <thread>
#include <vector>

namespace clean_deploy {

void SerialExecutor::run(int64_t n, TaskFn fn, void* ctx) const {
  for (int64_t t = 0; t < n; ++t) fn(ctx, t);
}

struct ThreadPoolExecutor::Impl {
  int threads = 1;
  std::vector<std::thread> workers;
  std::mutex run_mu;  // one run() at a time
  std::mutex mu;
  std::condition_variable wake, done_cv;
  // the current job; written under mu before `generation` is bumped
  uint64_t generation = 0;
  bool stop = false;
  int64_t n = 0;
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  std::atomic<int64_t> next{0};
  size_t acked = 0;  // workers done with the current generation

  static void work(std::atomic<int64_t>& next, int64_t n, TaskFn fn, void* ctx) {
    for (int64_t t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(ctx, t);
  }

  // Every worker takes part in every generation exactly once, and run() waits for all of them:
  // so no worker can wake late and touch a finished job.
  void worker_loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      wake.wait(lock, [&] { return stop || generation != seen; });
      if (stop) return;
      seen = generation;
      const int64_t job_n = n;
      const TaskFn job_fn = fn;
      void* const job_ctx = ctx;
      lock.unlock();
      work(next, job_n, job_fn, job_ctx);
      lock.lock();
      if (++acked == workers.size()) done_cv.notify_all();
    }
  }
};

ThreadPoolExecutor::ThreadPoolExecutor(int threads) : impl_(new Impl) {
  impl_->threads = std::max(1, threads);
  for (int i = 1; i < impl_->threads; ++i) impl_->workers.emplace_back([this] { impl_->worker_loop(); });
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  for (auto& w : impl_->workers) w.join();
}

int ThreadPoolExecutor::concurrency() const { return impl_->threads; }

void ThreadPoolExecutor::run(int64_t n, TaskFn fn, void* ctx) const {
  if (n <= 0) return;
  Impl& p = *impl_;
  if (p.workers.empty() || n == 1) {
    for (int64_t t = 0; t < n; ++t) fn(ctx, t);
    return;
  }
  std::lock_guard<std::mutex> run_lock(p.run_mu);
  {
    std::lock_guard<std::mutex> lock(p.mu);
    p.n = n;
    p.fn = fn;
    p.ctx = ctx;
    p.next.store(0, std::memory_order_relaxed);
    p.acked = 0;
    ++p.generation;
  }
  p.wake.notify_all();
  Impl::work(p.next, n, fn, ctx);
  std::unique_lock<std::mutex> lock(p.mu);
  p.done_cv.wait(lock, [&] { return p.acked == p.workers.size(); });
}

}  // namespace clean_deploy
