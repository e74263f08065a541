// clean_deploy::IoUAwareRedundancyElimination for ONNX Runtime (docs/custom_ops.md): attribute
// parsing, input checks naming the op/node and the expected shapes, one kernel call per frame.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "clean_deploy/redundancy.h"
#include "op_registry.h"
#include "ort_common.h"

namespace clean_deploy {
namespace ort {

namespace {

bool present(const Ort::ConstValue& v) { return static_cast<const OrtValue*>(v) != nullptr; }

}  // namespace

class RedundancyKernel {
 public:
  explicit RedundancyKernel(const OrtKernelInfo* info_ptr) {
    const Ort::ConstKernelInfo info(info_ptr);
    prefix_ = op_prefix("IoUAwareRedundancyElimination", info);
    namespace spec = op_spec::iou_aware_re;
    const std::string head = string_attr(info, spec::head_type, prefix_);
    if (head != "anchor" && head != "center") fail(prefix_, "attribute 'head_type' must be 'anchor' or 'center', got '" + head + "'");
    dp_.head = head == "anchor" ? HeadType::kAnchor : HeadType::kCenter;
    const int64_t nc = int_attr(info, spec::num_classes, prefix_);
    if (nc < 1) fail(prefix_, "attribute 'num_classes' must be >= 1");
    dp_.num_classes = static_cast<int>(nc);
    if (dp_.head == HeadType::kAnchor) {
      dp_.code_sincos = int_attr(info, spec::code_sincos, prefix_) != 0;
      dp_.use_dir = int_attr(info, spec::use_dir, prefix_) != 0;
      dp_.num_dir_bins = static_cast<int>(int_attr(info, spec::num_dir_bins, prefix_));
      dp_.dir_offset = float_attr(info, spec::dir_offset, prefix_);
      dp_.dir_limit_offset = float_attr(info, spec::dir_limit_offset, prefix_);
    } else {
      dp_.top_k = static_cast<int>(int_attr(info, spec::top_k, prefix_));
      const auto pcr = floats_attr(info, spec::pc_range, spec::pc_range.count, prefix_);
      const auto cell = floats_attr(info, spec::cell_size, spec::cell_size.count, prefix_);
      std::copy(pcr.begin(), pcr.end(), dp_.pc_range);
      std::copy(cell.begin(), cell.end(), dp_.cell_size);
    }
    ep_.beta = floats_attr(info, spec::beta, nc, prefix_);
    ep_.min_iou = floats_attr(info, spec::min_iou, nc, prefix_);
    ep_.nms_thresh = floats_attr(info, spec::nms_thresh, nc, prefix_);
    ep_.score_thresh = float_attr(info, spec::score_thresh, prefix_);
    ep_.cross_class_thresh = float_attr(info, spec::cross_class_thresh, prefix_);
    ep_.pre_max = static_cast<int>(int_attr(info, spec::pre_max, prefix_));
    ep_.max_output = static_cast<int>(int_attr(info, spec::max_output, prefix_));
    if (ep_.pre_max < 1 || ep_.max_output < 1) fail(prefix_, "attributes 'pre_max' and 'max_output' must be >= 1");
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept {
    return guarded(prefix_, [&] { compute(context); });
  }

 private:
  void compute(OrtKernelContext* context) const {
    const Ort::KernelContext ctx(context);
    const size_t n_in = ctx.GetInputCount();
    auto input = [&](size_t i) { return i < n_in ? ctx.GetInput(i) : Ort::ConstValue{nullptr}; };
    const Ort::ConstValue in0 = input(0), in1 = input(1), in2 = input(2), in3 = input(3), in4 = input(4);
    if (!present(in0) || !present(in1)) fail(prefix_, "inputs 0 and 1 (class logits and box/regression maps) are required");
    const auto s0 = in0.GetTensorTypeAndShapeInfo().GetShape();
    const auto s1 = in1.GetTensorTypeAndShapeInfo().GetShape();
    const int nc = dp_.num_classes;
    int64_t batch = 0;
    std::vector<Candidates> frames;
    if (dp_.head == HeadType::kAnchor) {
      if (s0.size() != 3 || s0[2] != nc) fail(prefix_, "input 'cls' must be float32 [B, K, " + std::to_string(nc) + "], got " + shape_str(s0));
      batch = s0[0];
      const int64_t k = s0[1];
      const int code = dp_.code_sincos ? 8 : 7;
      if (s1.size() != 3 || s1[0] != batch || s1[1] != k || s1[2] != code)
        fail(prefix_, "input 'box' must be float32 [B, K, " + std::to_string(code) + "] matching 'cls', got " + shape_str(s1));
      const float* dir = nullptr;
      if (dp_.use_dir) {
        if (!present(in2)) fail(prefix_, "use_dir=1 needs input 2 'dir' [B, K, num_dir_bins]");
        const auto s2 = in2.GetTensorTypeAndShapeInfo().GetShape();
        if (s2.size() != 3 || s2[0] != batch || s2[1] != k || s2[2] != dp_.num_dir_bins)
          fail(prefix_, "input 'dir' must be float32 [B, K, " + std::to_string(dp_.num_dir_bins) + "], got " + shape_str(s2));
        dir = in2.GetTensorData<float>();
      }
      const float* iou = nullptr;
      if (present(in3)) {
        const auto s3 = in3.GetTensorTypeAndShapeInfo().GetShape();
        if (s3.size() != 2 || s3[0] != batch || s3[1] != k) fail(prefix_, "input 'iou' must be float32 [B, K], got " + shape_str(s3));
        iou = in3.GetTensorData<float>();
      }
      if (!present(in4)) fail(prefix_, "head_type 'anchor' needs input 4 'anchors' [K, 7]");
      const auto s4 = in4.GetTensorTypeAndShapeInfo().GetShape();
      if (s4.size() != 2 || s4[0] != k || s4[1] != 7) fail(prefix_, "input 'anchors' must be float32 [K, 7], got " + shape_str(s4));
      for (int64_t b = 0; b < batch; ++b) {
        frames.push_back(decode_anchor_frame(in0.GetTensorData<float>() + b * k * nc, in1.GetTensorData<float>() + b * k * code,
                                             dir ? dir + b * k * dp_.num_dir_bins : nullptr, iou ? iou + b * k : nullptr,
                                             in4.GetTensorData<float>(), k, code, dp_, ep_.score_thresh));
      }
    } else {
      if (s0.size() != 4 || s0[1] != nc) fail(prefix_, "input 'hm' must be float32 [B, " + std::to_string(nc) + ", H, W], got " + shape_str(s0));
      batch = s0[0];
      const int64_t h = s0[2], w = s0[3];
      if (s1.size() != 4 || s1[0] != batch || s1[1] != 8 || s1[2] != h || s1[3] != w)
        fail(prefix_, "input 'reg' must be float32 [B, 8, H, W] matching 'hm', got " + shape_str(s1));
      const float* iou = nullptr;
      if (present(in3)) {
        const auto s3 = in3.GetTensorTypeAndShapeInfo().GetShape();
        if (s3.size() != 3 || s3[0] != batch || s3[1] != h || s3[2] != w)
          fail(prefix_, "input 'iou' must be float32 [B, H, W], got " + shape_str(s3));
        iou = in3.GetTensorData<float>();
      }
      for (int64_t b = 0; b < batch; ++b) {
        frames.push_back(decode_center_frame(in0.GetTensorData<float>() + b * nc * h * w, in1.GetTensorData<float>() + b * 8 * h * w,
                                             iou ? iou + b * h * w : nullptr, h, w, dp_));
      }
    }
    const int64_t m = ep_.max_output;
    const int64_t box_shape[3] = {batch, m, 7}, score_shape[2] = {batch, m}, count_shape[1] = {batch};
    float* boxes = ctx.GetOutput(0, box_shape, 3).GetTensorMutableData<float>();
    float* scores = ctx.GetOutput(1, score_shape, 2).GetTensorMutableData<float>();
    int32_t* labels = ctx.GetOutput(2, score_shape, 2).GetTensorMutableData<int32_t>();
    int32_t* count = ctx.GetOutput(3, count_shape, 1).GetTensorMutableData<int32_t>();
    std::fill(boxes, boxes + batch * m * 7, 0.0f);
    std::fill(scores, scores + batch * m, 0.0f);
    std::fill(labels, labels + batch * m, -1);
    for (int64_t b = 0; b < batch; ++b)
      count[b] = static_cast<int32_t>(eliminate(frames[b], ep_, boxes + b * m * 7, scores + b * m, labels + b * m));
  }

  std::string prefix_;
  DecodeParams dp_;
  EliminationParams ep_;
};

struct RedundancyOp : Ort::CustomOpBase<RedundancyOp, RedundancyKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const noexcept {
    return guarded(std::string(kDomain) + "::IoUAwareRedundancyElimination",
                   [&] { *kernel = new RedundancyKernel(info); });
  }
  const char* GetName() const { return "IoUAwareRedundancyElimination"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  // inputs: cls|hm, box|reg, dir (optional), iou (optional), anchors (optional)
  size_t GetInputTypeCount() const { return 5; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index < 2 ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED
                     : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL;
  }
  // outputs: boxes float [B, M, 7], scores float [B, M], labels int32 [B, M], valid_count int32 [B]
  size_t GetOutputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetOutputType(size_t index) const {
    return index >= 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
};

}  // namespace ort
}  // namespace clean_deploy

CLEAN_DEPLOY_REGISTER_OP(clean_deploy::ort::RedundancyOp)
