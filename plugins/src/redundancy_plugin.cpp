// TensorRT 10 (IPluginV3) plugin of clean_deploy::IoUAwareRedundancyElimination: the node's decode
// + IoU-aware rescoring + greedy elimination (docs/custom_ops.md), static output size M =
// max_output: boxes [B, M, 7], scores [B, M], labels [B, M] int32 (-1 padding), valid_count [B] int32.
//
// The node's five input slots are (anchor head) cls, box, dir, iou, anchors or (center head) hm,
// reg, -, iou, -; unused optional slots are empty names in the ONNX graph. plugins/prepare_onnx.py
// drops the empty ones and records which slots remain in the attribute `present_inputs` (ints[5]);
// without that attribute the plugin's inputs are the slots in order.
#include <stdexcept>

#include "plugin_utils.h"

namespace clean_deploy_trt {

namespace {

using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IExprBuilder;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

enum Slot { kCls = 0, kBox = 1, kDir = 2, kIou = 3, kAnchors = 4, kSlots = 5 };

struct ReAttrs {
  cdRedundancyParams p{};
  std::vector<int32_t> present{1, 1, 1, 1, 1};  // slot -> present
  bool present_given = false;

  // TensorRT input index of a slot, or -1.
  int input_of(int slot, int32_t nb_inputs) const {
    if (!present_given) return slot < nb_inputs ? slot : -1;
    if (!present[slot]) return -1;
    int index = 0;
    for (int s = 0; s < slot; ++s) index += present[s] != 0;
    return index < nb_inputs ? index : -1;
  }

  void parse(const Fields& f) {
    namespace spec = clean_deploy::op_spec::iou_aware_re_trt;
    const std::string head = f.str(spec::head_type);
    if (head != "anchor" && head != "center")
      throw std::invalid_argument("attribute 'head_type' must be 'anchor' or 'center', got '" + head + "'");
    p.head_type = head == "anchor" ? CD_HEAD_ANCHOR : CD_HEAD_CENTER;
    const int64_t nc = f.int1(spec::num_classes);
    if (nc < 1 || nc > CD_RE_MAX_CLASSES)
      throw std::invalid_argument("attribute 'num_classes' must be in [1, " + std::to_string(CD_RE_MAX_CLASSES) + "]");
    p.num_classes = static_cast<int32_t>(nc);
    p.code_sincos = static_cast<int32_t>(f.int1(spec::code_sincos) != 0);
    p.code_size = p.code_sincos ? 8 : 7;
    p.use_dir = static_cast<int32_t>(f.int1(spec::use_dir) != 0);
    p.num_dir_bins = static_cast<int32_t>(f.int1(spec::num_dir_bins));
    p.dir_offset = static_cast<float>(f.float1(spec::dir_offset));
    p.dir_limit_offset = static_cast<float>(f.float1(spec::dir_limit_offset));
    p.top_k = static_cast<int32_t>(f.int1(spec::top_k));
    // required for centre heads; an anchor head does not read them (serialised as zeros)
    const std::vector<double> zeros6(6, 0.0), zeros2(2, 0.0);
    const auto pcr = f.floats(spec::pc_range, spec::pc_range.count, p.head_type == CD_HEAD_CENTER ? nullptr : &zeros6);
    const auto cell = f.floats(spec::cell_size, spec::cell_size.count, p.head_type == CD_HEAD_CENTER ? nullptr : &zeros2);
    for (int i = 0; i < 6; ++i) p.pc_range[i] = static_cast<float>(pcr[i]);
    for (int i = 0; i < 2; ++i) p.cell_size[i] = static_cast<float>(cell[i]);
    const auto beta = f.floats(spec::beta, nc, nullptr), min_iou = f.floats(spec::min_iou, nc, nullptr),
               nms = f.floats(spec::nms_thresh, nc, nullptr);
    for (int64_t c = 0; c < nc; ++c) {
      p.beta[c] = static_cast<float>(beta[c]);
      p.min_iou[c] = static_cast<float>(min_iou[c]);
      p.nms_thresh[c] = static_cast<float>(nms[c]);
    }
    p.score_thresh = static_cast<float>(f.float1(spec::score_thresh));
    p.cross_class_thresh = static_cast<float>(f.float1(spec::cross_class_thresh));
    p.pre_max = static_cast<int32_t>(f.int1(spec::pre_max));
    p.max_output = static_cast<int32_t>(f.int1(spec::max_output));
    if (p.pre_max < 1 || p.max_output < 1) throw std::invalid_argument("attributes 'pre_max' and 'max_output' must be >= 1");
    if (f.has(spec::present_inputs)) {
      const auto pr = f.ints(spec::present_inputs);
      for (int s = 0; s < kSlots; ++s) present[s] = pr[s] != 0;
      present_given = true;
    }
  }

  void write(FieldWriter& w) const {
    namespace spec = clean_deploy::op_spec::iou_aware_re_trt;
    const int nc = p.num_classes;
    w.add_string(spec::head_type, p.head_type == CD_HEAD_ANCHOR ? "anchor" : "center");
    w.add_ints(spec::num_classes, {p.num_classes});
    w.add_ints(spec::code_sincos, {p.code_sincos});
    w.add_ints(spec::use_dir, {p.use_dir});
    w.add_ints(spec::num_dir_bins, {p.num_dir_bins});
    w.add_floats(spec::dir_offset, {p.dir_offset});
    w.add_floats(spec::dir_limit_offset, {p.dir_limit_offset});
    w.add_ints(spec::top_k, {p.top_k});
    w.add_floats(spec::pc_range, std::vector<float>(p.pc_range, p.pc_range + 6));
    w.add_floats(spec::cell_size, std::vector<float>(p.cell_size, p.cell_size + 2));
    w.add_floats(spec::beta, std::vector<float>(p.beta, p.beta + nc));
    w.add_floats(spec::min_iou, std::vector<float>(p.min_iou, p.min_iou + nc));
    w.add_floats(spec::nms_thresh, std::vector<float>(p.nms_thresh, p.nms_thresh + nc));
    w.add_floats(spec::score_thresh, {p.score_thresh});
    w.add_floats(spec::cross_class_thresh, {p.cross_class_thresh});
    w.add_ints(spec::pre_max, {p.pre_max});
    w.add_ints(spec::max_output, {p.max_output});
    if (present_given) w.add_ints(spec::present_inputs, present);
  }
};

class RedundancyPlugin final : public PluginBase {
 public:
  RedundancyPlugin(std::string name, ReAttrs attrs) : PluginBase(std::move(name)), a_(std::move(attrs)) {}

  const char* getPluginName() const noexcept override { return "IoUAwareRedundancyElimination"; }
  nvinfer1::IPluginV3* clone() noexcept override {
    try {
      auto* c = new RedundancyPlugin(layer_name_, a_);
      c->num_inputs_ = num_inputs_;
      return c;
    } catch (...) {
      return nullptr;
    }
  }
  int32_t getNbOutputs() const noexcept override { return 4; }

  int32_t getOutputDataTypes(DataType* out, int32_t nb_outputs, const DataType* in, int32_t nb_inputs) const noexcept override {
    if (nb_outputs != 4) return 1;
    out[0] = DataType::kFLOAT;
    out[1] = DataType::kFLOAT;
    out[2] = DataType::kINT32;
    out[3] = DataType::kINT32;
    return 0;
  }

  int32_t getOutputShapes(const DimsExprs* in, int32_t nb_inputs, const DimsExprs* shape_inputs, int32_t nb_shape_inputs,
                          DimsExprs* out, int32_t nb_outputs, IExprBuilder& expr) noexcept override {
    const int cls = a_.input_of(kCls, nb_inputs);
    if (cls < 0 || nb_outputs != 4) {
      log_error(who() + ": the class logits / heatmap input is missing, or the node does not have 4 outputs");
      return 1;
    }
    const nvinfer1::IDimensionExpr* batch = in[cls].d[0];
    const nvinfer1::IDimensionExpr* m = expr.constant(a_.p.max_output);
    out[0].nbDims = 3;
    out[0].d[0] = batch;
    out[0].d[1] = m;
    out[0].d[2] = expr.constant(7);
    out[1].nbDims = 2;
    out[1].d[0] = batch;
    out[1].d[1] = m;
    out[2] = out[1];
    out[3].nbDims = 1;
    out[3].d[0] = batch;
    return 0;
  }

  bool supportsFormatCombination(int32_t pos, const DynamicPluginTensorDesc* io, int32_t nb_inputs,
                                 int32_t nb_outputs) noexcept override {
    const PluginTensorDesc& d = io[pos].desc;
    if (d.format != TensorFormat::kLINEAR) return false;
    if (pos < nb_inputs) return d.type == DataType::kFLOAT;
    const int out = pos - nb_inputs;
    return d.type == (out < 2 ? DataType::kFLOAT : DataType::kINT32);
  }

  int32_t configurePlugin(const DynamicPluginTensorDesc* in, int32_t nb_inputs, const DynamicPluginTensorDesc* out,
                          int32_t nb_outputs) noexcept override {
    try {
      num_inputs_ = nb_inputs;
      std::string problem = check(in, nb_inputs);
      if (!problem.empty()) {
        log_error(who() + ": " + problem);
        return 1;
      }
      return 0;
    } catch (...) {
      return 1;
    }
  }

  size_t getWorkspaceSize(const DynamicPluginTensorDesc* in, int32_t nb_inputs, const DynamicPluginTensorDesc* out,
                          int32_t nb_outputs) const noexcept override {
    int64_t k = 0, h = 0, w = 0;
    sizes(in, nb_inputs, true, k, h, w);
    return cdRedundancyWorkspaceSize(&a_.p, k, h, w);
  }

  int32_t enqueue(const PluginTensorDesc* in_desc, const PluginTensorDesc* out_desc, const void* const* inputs,
                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
    try {
      const int32_t nb = num_inputs_ > 0 ? num_inputs_ : kSlots;
      auto ptr = [&](int slot) -> const float* {
        const int i = a_.input_of(slot, nb);
        return i < 0 ? nullptr : static_cast<const float*>(inputs[i]);
      };
      const int cls = a_.input_of(kCls, nb);
      const int32_t batch = static_cast<int32_t>(in_desc[cls].dims.d[0]);
      int64_t k = 0, h = 0, w = 0;
      if (a_.p.head_type == CD_HEAD_ANCHOR) {
        k = in_desc[cls].dims.d[1];
      } else {
        h = in_desc[cls].dims.d[2];
        w = in_desc[cls].dims.d[3];
      }
      const size_t ws = cdRedundancyWorkspaceSize(&a_.p, k, h, w);
      const bool anchor = a_.p.head_type == CD_HEAD_ANCHOR;
      const cdCudaStatus st = cdRedundancyForward(
          &a_.p, batch, k, h, w, ptr(kCls), ptr(kBox), anchor && a_.p.use_dir ? ptr(kDir) : nullptr, ptr(kIou),
          anchor ? ptr(kAnchors) : nullptr, static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]),
          static_cast<int32_t*>(outputs[2]), static_cast<int32_t*>(outputs[3]), workspace, ws, stream);
      if (st != CD_CUDA_OK) {
        log_error(who() + ": " + cdCudaStatusName(st) + ": " + cdCudaLastError());
        return 1;
      }
      return 0;
    } catch (...) {
      return 1;
    }
  }

  const nvinfer1::PluginFieldCollection* getFieldsToSerialize() noexcept override {
    serial_ = FieldWriter();
    a_.write(serial_);
    serial_.add_ints("num_inputs", {num_inputs_});
    return serial_.collection();
  }

 private:
  // Problem sizes (anchors K, or heatmap H x W) from the input descriptions (max dims if `max`).
  void sizes(const DynamicPluginTensorDesc* in, int32_t nb_inputs, bool max, int64_t& k, int64_t& h, int64_t& w) const {
    const int cls = a_.input_of(kCls, nb_inputs);
    if (cls < 0) return;
    const nvinfer1::Dims& d = max ? in[cls].max : in[cls].desc.dims;
    if (a_.p.head_type == CD_HEAD_ANCHOR && d.nbDims == 3) k = d.d[1];
    if (a_.p.head_type == CD_HEAD_CENTER && d.nbDims == 4) h = d.d[2], w = d.d[3];
  }

  // Shape checks of docs/custom_ops.md ("" when fine). Unknown (-1) extents are not compared.
  std::string check(const DynamicPluginTensorDesc* in, int32_t nb_inputs) const {
    const int nc = a_.p.num_classes;
    auto dims = [&](int slot) -> const nvinfer1::Dims* {
      const int i = a_.input_of(slot, nb_inputs);
      return i < 0 ? nullptr : &in[i].desc.dims;
    };
    auto same = [](int64_t a, int64_t b) { return a < 0 || b < 0 || a == b; };
    const nvinfer1::Dims *c = dims(kCls), *b = dims(kBox), *dr = dims(kDir), *iou = dims(kIou), *an = dims(kAnchors);
    if (!c || !b) return "inputs 0 and 1 (class logits / heatmap and box codes / regression maps) are required";
    if (a_.p.head_type == CD_HEAD_ANCHOR) {
      if (c->nbDims != 3 || !same(c->d[2], nc)) return "input 'cls' must be [B, K, " + std::to_string(nc) + "], got " + dims_str(*c);
      if (b->nbDims != 3 || !same(b->d[2], a_.p.code_size) || !same(b->d[1], c->d[1]))
        return "input 'box' must be [B, K, " + std::to_string(a_.p.code_size) + "] matching 'cls', got " + dims_str(*b);
      if (a_.p.use_dir && (!dr || dr->nbDims != 3 || !same(dr->d[2], a_.p.num_dir_bins)))
        return "use_dir=1 needs input 'dir' [B, K, " + std::to_string(a_.p.num_dir_bins) + "]";
      if (iou && (iou->nbDims != 2 || !same(iou->d[1], c->d[1]))) return "input 'iou' must be [B, K], got " + dims_str(*iou);
      if (!an || an->nbDims != 2 || !same(an->d[0], c->d[1]) || !same(an->d[1], 7))
        return "head_type 'anchor' needs input 'anchors' [K, 7]";
    } else {
      if (c->nbDims != 4 || !same(c->d[1], nc)) return "input 'hm' must be [B, " + std::to_string(nc) + ", H, W], got " + dims_str(*c);
      if (b->nbDims != 4 || !same(b->d[1], 8) || !same(b->d[2], c->d[2]) || !same(b->d[3], c->d[3]))
        return "input 'reg' must be [B, 8, H, W] matching 'hm', got " + dims_str(*b);
      if (iou && (iou->nbDims != 3 || !same(iou->d[1], c->d[2]) || !same(iou->d[2], c->d[3])))
        return "input 'iou' must be [B, H, W], got " + dims_str(*iou);
    }
    return "";
  }

  ReAttrs a_;
};

class RedundancyCreator final : public CreatorBase {
 public:
  RedundancyCreator() {
    declared_.declare(clean_deploy::op_spec::iou_aware_re_trt::kAttrs);
  }
  const char* getPluginName() const noexcept override { return "IoUAwareRedundancyElimination"; }
  nvinfer1::IPluginV3* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    const std::string layer = name ? name : "";
    try {
      Fields f(fc);
      ReAttrs a;
      a.parse(f);
      auto* plugin = new RedundancyPlugin(layer, a);
      const int64_t unknown = -1;
      plugin->set_num_inputs(static_cast<int32_t>(f.int1("num_inputs", &unknown)));
      return plugin;
    } catch (const std::exception& e) {
      log_error("IoUAwareRedundancyElimination '" + layer + "': " + e.what());
    } catch (...) {
      log_error("IoUAwareRedundancyElimination '" + layer + "': unknown error");
    }
    return nullptr;
  }
};

}  // namespace

nvinfer1::IPluginCreatorInterface* redundancy_elimination_creator() {
  static RedundancyCreator creator;
  return &creator;
}

}  // namespace clean_deploy_trt
