// Shared helpers of the clean_deploy ONNX Runtime custom ops: the ORT C++ API (with
// ORT_API_MANUAL_INIT: the library does not link libonnxruntime, the API pointer comes from
// RegisterCustomOps), error conversion to OrtStatus, attribute readers and an Executor running on
// ORT's intra-op thread pool.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "clean_deploy/op_spec.h"
#include "clean_deploy/parallel.h"

namespace clean_deploy {
namespace ort {

inline constexpr const char* kDomain = "clean_deploy";

// Thrown for invalid inputs/attributes; becomes ORT_INVALID_ARGUMENT. Messages are prefixed with
// "clean_deploy::<Op> (node '<name>'): ".
[[noreturn]] void fail(const std::string& prefix, const std::string& what);

// Runs `body` and converts any exception into an OrtStatus (nullptr on success); exceptions must
// not cross the C boundary into ONNX Runtime.
template <class F>
OrtStatusPtr guarded(const std::string& prefix, F&& body) noexcept;

// Attribute readers. Missing attribute: `fallback` if given, else an error naming what was expected.
std::vector<int64_t> ints_attr(const Ort::ConstKernelInfo& info, const char* name, size_t count,
                               const std::string& prefix, const std::vector<int64_t>* fallback);
int64_t int_attr(const Ort::ConstKernelInfo& info, const char* name, const std::string& prefix, const int64_t* fallback);
std::string string_attr(const Ort::ConstKernelInfo& info, const char* name, const std::string& prefix,
                        const char* fallback);

// The same, by the attribute's specification (clean_deploy/op_spec.h, generated from
// clean_deploy/op_spec.py): its name, its length (ints with a fixed count) and its default (none:
// required). `count` overrides the length of a list whose length another attribute gives.
std::vector<int64_t> ints_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix);
int64_t int_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix);
std::string string_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix);
float float_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix);
std::vector<float> floats_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, size_t count,
                               const std::string& prefix);

// "clean_deploy::<op> (node '<name>')" for error messages.
std::string op_prefix(const char* op_name, const Ort::ConstKernelInfo& info);

// "[2, 3]" for error messages.
std::string shape_str(const std::vector<int64_t>& shape);

// Executor over the kernel context's intra-op thread pool (KernelContext_ParallelFor): the session's
// intra_op_num_threads decide the parallelism; with one thread tasks run on the calling thread.
class OrtExecutor final : public Executor {
 public:
  explicit OrtExecutor(const Ort::KernelContext& ctx) : ctx_(ctx) {}
  void run(int64_t n, TaskFn fn, void* ctx) const override;
  int concurrency() const override { return 0; }  // unknown: ORT does not expose the pool size

 private:
  const Ort::KernelContext& ctx_;
};

// ---- template implementation --------------------------------------------------------------

template <class F>
OrtStatusPtr guarded(const std::string& prefix, F&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::invalid_argument& e) {
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, (prefix + ": " + e.what()).c_str());
  } catch (const std::bad_alloc&) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, (prefix + ": out of memory").c_str());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, (prefix + ": " + e.what()).c_str());
  } catch (...) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, (prefix + ": unknown error").c_str());
  }
}

}  // namespace ort
}  // namespace clean_deploy
