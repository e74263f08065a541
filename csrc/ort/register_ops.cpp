// Entry point of libclean_deploy_ort.so: RegisterCustomOps adds the `clean_deploy` op domain with
// every registered op (op_registry.h) to a session's options (Python:
// SessionOptions.register_custom_ops_library). Adding an op needs no change here: write
// csrc/ort/<op>_op.{h,cpp} ending with CLEAN_DEPLOY_REGISTER_OP(<OpType>).
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "op_registry.h"
#include "ort_common.h"

namespace clean_deploy {
namespace ort {
namespace {

std::vector<const OrtCustomOp*>& registry() {
  static std::vector<const OrtCustomOp*> ops;
  return ops;
}

// Domains must outlive the sessions that use them: keep every domain created.
std::mutex domains_mu;
std::vector<std::unique_ptr<Ort::CustomOpDomain>>& domains() {
  static auto* d = new std::vector<std::unique_ptr<Ort::CustomOpDomain>>;  // never destroyed
  return *d;
}

}  // namespace

OpRegistration::OpRegistration(const OrtCustomOp* op) { registry().push_back(op); }

std::vector<const OrtCustomOp*> registered_ops() {
  std::vector<const OrtCustomOp*> ops = registry();
  std::sort(ops.begin(), ops.end(), [](const OrtCustomOp* a, const OrtCustomOp* b) {
    return std::strcmp(a->GetName(a), b->GetName(b)) < 0;
  });
  return ops;
}

}  // namespace ort
}  // namespace clean_deploy

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  using namespace clean_deploy::ort;
  const OrtApi* api = api_base ? api_base->GetApi(ORT_API_VERSION) : nullptr;
  if (!api) {
    // The runtime is older than the headers we were built with; report with the oldest API we use.
    const OrtApi* old = api_base ? api_base->GetApi(17) : nullptr;
#define CD_STR2(x) #x
#define CD_STR(x) CD_STR2(x)
    return old ? old->CreateStatus(ORT_FAIL, "libclean_deploy_ort: this ONNX Runtime is too old (the library needs "
                                             "ORT API version " CD_STR(ORT_API_VERSION) ", ONNX Runtime >= 1."
                                             CD_STR(ORT_API_VERSION) ")")
               : nullptr;
#undef CD_STR
#undef CD_STR2
  }
  Ort::InitApi(api);
  return guarded("libclean_deploy_ort: RegisterCustomOps", [&] {
    auto domain = std::make_unique<Ort::CustomOpDomain>(kDomain);
    for (const OrtCustomOp* op : registered_ops()) domain->Add(op);
    Ort::UnownedSessionOptions(options).Add(*domain);
    std::lock_guard<std::mutex> lock(domains_mu);
    domains().push_back(std::move(domain));
  });
}
