// A counting CHECK for the host test programs (csrc/cuda/tests/test_cuda_kernels.cpp,
// plugins/tests/plugin_harness.cpp, plugins/tests/plugin_enqueue_emu.cpp): a failed check prints
// file:line, the condition and a printf-style message and the program goes on, so one run reports
// every failure; each program prints "<name>: N checks, M failed" (tests parse that line) and exits
// non-zero when M > 0.
#pragma once

#include <cstdio>

namespace clean_deploy::testing {
inline int g_checks = 0;
inline int g_failures = 0;
}  // namespace clean_deploy::testing

#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    ++::clean_deploy::testing::g_checks;                                                       \
    if (!(cond)) {                                                                             \
      ++::clean_deploy::testing::g_failures;                                                   \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);            \
      std::fprintf(stderr, __VA_ARGS__);                                                       \
      std::fprintf(stderr, "\n");                                                              \
    }                                                                                          \
  } while (0)
