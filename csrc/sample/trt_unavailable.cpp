// clean_deploy C++ sample: stand-in for trt_detector.cpp in builds without TensorRT.
#include "detector.h"
#include "error.h"

namespace clean_deploy {
namespace sample {

bool have_tensorrt() { return false; }

std::unique_ptr<Detector> make_trt_detector(const TrtBackendOptions&, const Sidecar&) {
  throw SampleError("this clean_deploy_infer was built without TensorRT: reconfigure with "
                    "-DCLEAN_DEPLOY_SAMPLE_WITH_TENSORRT=ON (TensorRT and the CUDA toolkit installed; "
                    "TENSORRT_ROOT=/path if not in a system folder), or run the ONNX model with --model");
}

}  // namespace sample
}  // namespace clean_deploy

