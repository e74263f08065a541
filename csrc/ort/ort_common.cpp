// Helpers shared by the clean_deploy ONNX Runtime custom ops (see ort_common.h).
#include "ort_common.h"

#include <sstream>

namespace clean_deploy {
namespace ort {

void fail(const std::string& prefix, const std::string& what) {
  throw Ort::Exception(prefix + ": " + what, ORT_INVALID_ARGUMENT);
}

std::string op_prefix(const char* op_name, const Ort::ConstKernelInfo& info) {
  std::string node;
  try {
    node = info.GetNodeName();
  } catch (const Ort::Exception&) {
  }
  std::string p = std::string(kDomain) + "::" + op_name;
  if (!node.empty()) p += " (node '" + node + "')";
  return p;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

std::vector<int64_t> ints_attr(const Ort::ConstKernelInfo& info, const char* name, size_t count,
                               const std::string& prefix, const std::vector<int64_t>* fallback) {
  size_t size = 0;
  OrtStatus* st = Ort::GetApi().KernelInfoGetAttributeArray_int64(info, name, nullptr, &size);
  if (st) {
    Ort::GetApi().ReleaseStatus(st);
    if (fallback) return *fallback;
    fail(prefix, std::string("attribute '") + name + "' (ints[" + std::to_string(count) + "]) is required");
  }
  std::vector<int64_t> v(size);
  if (size) Ort::ThrowOnError(Ort::GetApi().KernelInfoGetAttributeArray_int64(info, name, v.data(), &size));
  if (v.size() != count)
    fail(prefix, std::string("attribute '") + name + "' must have " + std::to_string(count) + " values (z, y, x), got " +
                     shape_str(v));
  return v;
}

int64_t int_attr(const Ort::ConstKernelInfo& info, const char* name, const std::string& prefix, const int64_t* fallback) {
  int64_t v = 0;
  OrtStatus* st = Ort::GetApi().KernelInfoGetAttribute_int64(info, name, &v);
  if (st) {
    Ort::GetApi().ReleaseStatus(st);
    if (fallback) return *fallback;
    fail(prefix, std::string("attribute '") + name + "' (int) is required");
  }
  return v;
}

std::string string_attr(const Ort::ConstKernelInfo& info, const char* name, const std::string& prefix,
                        const char* fallback) {
  size_t size = 0;
  OrtStatus* st = Ort::GetApi().KernelInfoGetAttribute_string(info, name, nullptr, &size);
  if (st) {
    Ort::GetApi().ReleaseStatus(st);
    if (fallback) return fallback;
    fail(prefix, std::string("attribute '") + name + "' (string) is required");
  }
  std::string s(size, '\0');
  Ort::ThrowOnError(Ort::GetApi().KernelInfoGetAttribute_string(info, name, &s[0], &size));
  if (!s.empty() && s.back() == '\0') s.pop_back();  // size includes the terminating null
  return s;
}

std::vector<int64_t> ints_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix) {
  if (a.count < 0) fail(prefix, std::string("attribute '") + a.name + "': its length is not fixed by the spec");
  const std::vector<int64_t> fallback(a.ints, a.ints + a.count);
  return ints_attr(info, a.name, static_cast<size_t>(a.count), prefix, a.required ? nullptr : &fallback);
}

int64_t int_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix) {
  const int64_t fallback = a.ints[0];
  return int_attr(info, a.name, prefix, a.required ? nullptr : &fallback);
}

std::string string_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix) {
  return string_attr(info, a.name, prefix, a.required ? nullptr : a.str);
}

float float_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, const std::string& prefix) {
  try {
    return info.GetAttribute<float>(a.name);
  } catch (const Ort::Exception&) {
    if (!a.required) return static_cast<float>(a.real);
    fail(prefix, std::string("missing float attribute '") + a.name + "'");
  }
}

std::vector<float> floats_attr(const Ort::ConstKernelInfo& info, const op_spec::Attr& a, size_t count,
                               const std::string& prefix) {
  std::vector<float> v;
  try {
    v = info.GetAttributes<float>(a.name);
  } catch (const Ort::Exception&) {
    fail(prefix, std::string("missing floats attribute '") + a.name + "' (" + std::to_string(count) + " values)");
  }
  if (v.size() != count)
    fail(prefix, std::string("attribute '") + a.name + "' needs " + std::to_string(count) + " values, got " +
                     std::to_string(v.size()));
  return v;
}

void OrtExecutor::run(int64_t n, TaskFn fn, void* ctx) const {
  if (n <= 0) return;
  if (n == 1) {
    fn(ctx, 0);
    return;
  }
  struct Job {
    TaskFn fn;
    void* ctx;
  } job{fn, ctx};
  ctx_.ParallelFor([](void* p, size_t i) {
        auto* j = static_cast<Job*>(p);
        j->fn(j->ctx, static_cast<int64_t>(i));
      },
      static_cast<size_t>(n), 0, &job);
}

}  // namespace ort
}  // namespace clean_deploy
