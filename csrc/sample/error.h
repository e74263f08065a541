// clean_deploy C++ sample: the one exception type of the sample. Every failure the user can cause
// (missing file, bad shape, malformed calib, too many voxels, ...) is a SampleError whose message
// names the file/tensor and what was expected; main() prints it and exits non-zero (1, or 2 for a
// bad command line).
#pragma once

#include <stdexcept>
#include <string>

namespace clean_deploy {
namespace sample {

class SampleError : public std::runtime_error {
 public:
  explicit SampleError(const std::string& what) : std::runtime_error(what) {}
};

// A bad command line (exit status 2 instead of 1).
class UsageError : public SampleError {
 public:
  explicit UsageError(const std::string& what) : SampleError(what) {}
};

}  // namespace sample
}  // namespace clean_deploy
