// Registry of the custom ops of libclean_deploy_ort.so. Each op's .cpp (csrc/ort/<op>_op.cpp, picked
// up by CMake automatically) registers itself with one line at namespace scope:
//
//     CLEAN_DEPLOY_REGISTER_OP(SparseConvolutionOp);
//
// and RegisterCustomOps (register_ops.cpp) adds every registered op to the `clean_deploy` domain.
#pragma once

#include <vector>

#include "ort_common.h"

namespace clean_deploy {
namespace ort {

// All registered ops (filled during static initialisation of the library), sorted by name.
std::vector<const OrtCustomOp*> registered_ops();

struct OpRegistration {
  explicit OpRegistration(const OrtCustomOp* op);
};

}  // namespace ort
}  // namespace clean_deploy

#define CLEAN_DEPLOY_CONCAT2(a, b) a##b
#define CLEAN_DEPLOY_CONCAT(a, b) CLEAN_DEPLOY_CONCAT2(a, b)
// Defines a library-lifetime instance of `OpType` (an Ort::CustomOpBase) and registers it.
#define CLEAN_DEPLOY_REGISTER_OP(OpType)                                                          \
  namespace {                                                                                     \
  const OpType CLEAN_DEPLOY_CONCAT(clean_deploy_op_, __LINE__){};                                 \
  const ::clean_deploy::ort::OpRegistration CLEAN_DEPLOY_CONCAT(clean_deploy_op_registration_, __LINE__){ \
      &CLEAN_DEPLOY_CONCAT(clean_deploy_op_, __LINE__)};                                          \
  }
