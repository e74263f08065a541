// clean_deploy C++ sample: graph outputs -> Detections (see detector.h).
#include <algorithm>

#include "detector.h"
#include "error.h"

namespace clean_deploy {
namespace sample {

void decode_outputs(const float* boxes, const float* scores, const int32_t* labels, int64_t max_output,
                    int64_t valid_count, size_t num_classes, const std::string& backend, Detections& out) {
  if (valid_count < 0 || valid_count > max_output)
    throw SampleError(backend + ": valid_count " + std::to_string(valid_count) + " outside [0, " +
                      std::to_string(max_output) + "]");
  const size_t n = static_cast<size_t>(valid_count);
  out.boxes.assign(boxes, boxes + 7 * n);
  out.scores.assign(scores, scores + n);
  out.labels.assign(labels, labels + n);
  for (size_t i = 0; i < n; ++i) {
    if (out.labels[i] < 0 || static_cast<size_t>(out.labels[i]) >= num_classes)
      throw SampleError(backend + ": detection " + std::to_string(i) + " has label " + std::to_string(out.labels[i]) +
                        ", the sidecar lists " + std::to_string(num_classes) + " classes");
  }
}

}  // namespace sample
}  // namespace clean_deploy
