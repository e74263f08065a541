// clean_deploy/parallel.h: the parallel-for abstraction the CPU kernels run on.
//
// Kernels split their work into independent tasks whose results do not depend on which thread runs
// them, so outputs are bitwise identical for any thread count. The ONNX Runtime op adapts ORT's
// intra-op thread pool to this interface (csrc/ort); standalone users (tests, tools) take
// SerialExecutor or ThreadPoolExecutor below.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>

namespace clean_deploy {

class Executor {
 public:
  using TaskFn = void (*)(void* ctx, int64_t task);
  virtual ~Executor() = default;
  // Calls fn(ctx, t) exactly once for every t in [0, n), possibly concurrently and in any order;
  // returns when all calls have returned. fn must not throw (use for_each for code that may).
  virtual void run(int64_t n, TaskFn fn, void* ctx) const = 0;
  // Upper bound on the number of tasks that run at the same time (for sizing work only).
  virtual int concurrency() const = 0;

  // run() for a callable f(int64_t task). An exception thrown by a task is caught and, after all
  // tasks have finished, the one of the lowest task index is rethrown (deterministic).
  template <class F>
  void for_each(int64_t n, F&& f) const;
};

// Runs the tasks one after the other on the calling thread.
class SerialExecutor final : public Executor {
 public:
  void run(int64_t n, TaskFn fn, void* ctx) const override;
  int concurrency() const override { return 1; }
};

// A fixed pool of std::threads; the calling thread takes part in the work (so `threads` = 1 means
// no extra thread). Tasks are handed out dynamically. One run() at a time per pool.
class ThreadPoolExecutor final : public Executor {
 public:
  explicit ThreadPoolExecutor(int threads);
  ~ThreadPoolExecutor() override;
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;
  void run(int64_t n, TaskFn fn, void* ctx) const override;
  int concurrency() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- implementation of the template -------------------------------------------------------

template <class F>
void Executor::for_each(int64_t n, F&& f) const {
  if (n <= 0) return;
  struct Ctx {
    F* f;
    std::mutex mu;
    int64_t failed_task = -1;
    std::exception_ptr error;
  } ctx{&f, {}, -1, nullptr};
  run(n, [](void* p, int64_t t) {
        auto* c = static_cast<Ctx*>(p);
        try {
          (*c->f)(t);
        } catch (...) {
          std::lock_guard<std::mutex> lock(c->mu);
          if (c->failed_task < 0 || t < c->failed_task) {
            c->failed_task = t;
            c->error = std::current_exception();
          }
        }
      },
      &ctx);
  if (ctx.error) std::rethrow_exception(ctx.error);
}

}  // namespace clean_deploy
