// TensorRT 10 (IPluginV3) plugins of clean_deploy::SparseConvolution.
//
// A regular (strided) sparse conv has a data-dependent number of output sites, so its plugins
// declare a size tensor (IExprBuilder::declareSizeTensor): an extra 0-D int32 output `num_out`.
// Its upper bound sizes what TensorRT allocates, so it must fit the device:
//   upper = min(N * (max outputs per input), max_batch * output grid volume, max_out_rows)
// (terms whose attribute is 0 are left out). N * fan-out alone compounds through the layers (tens of
// millions of rows on KITTI's grid); max_out_rows (plugins/prepare_onnx.py: the rows the exported
// model really produced on calibration frames, with margin) keeps every layer near its real size.
// `opt` is a constant (opt_rows, else min(upper cap, 16384)): the header forbids an opt that depends
// on a size tensor. A frame producing more rows than max_out_rows fails at enqueue (the plugin reads
// the kernel's capacity flag back), it is never truncated silently.
//
//  SparseConvolution     one node of the exported graph as is (index pairs + GEMM in one plugin).
//                        inputs  features [N, Cin] (float/half), indices [N, 4] int32,
//                                weight [Cout, kD, kH, kW, Cin] float, bias [Cout] float (optional)
//                        outputs out_features [M, Cout], out_indices [M, 4] int32, and for regular
//                                convs num_out (0-D int32 size tensor; plugins/prepare_onnx.py adds
//                                it to the node, as parsers that require a node output per plugin
//                                output need)
//  SparseConvIndexPairs  the index-pair (rulebook) step alone (Autoware's GetIndicePairs analogue);
//                        plugins/prepare_onnx.py splits each node into it + SparseConvGemm and
//                        shares one between submanifold layers with the same sites and geometry.
//                        inputs  indices [N, 4]
//                        outputs subm: neighbors [N, K]; regular: out_indices [M, 4], neighbors
//                                [M, K], num_out (size tensor)
//  SparseConvGemm        the implicit GEMM alone: inputs features [N, Cin], neighbors [M, K],
//                        weight, bias (optional); output out_features [M, Cout].
// Features may be float32 or float16 (float32 accumulation); indices, weights and bias keep their
// types (TensorRT inserts casts where needed).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "plugin_utils.h"

namespace clean_deploy_trt {

namespace {

using nvinfer1::DataType;
using nvinfer1::DimensionOperation;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IExprBuilder;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

constexpr size_t kAlign = 256;
inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// ---- attributes ---------------------------------------------------------------------------------

constexpr int64_t kNoCap = INT64_MAX;
constexpr int64_t kDefaultOptRows = 16384;

struct ConvAttrs {
  cdSparseConvGeometry g{};
  std::string activation = "none";
  int64_t max_out_rows = 0;  // data-derived cap on the output rows of a regular conv (0: none)
  int64_t opt_rows = 0;      // optimisation-profile value of the output rows (0: default)

  bool relu() const { return activation == "relu"; }
  int64_t kernel_volume() const { return cdSparseConvKernelVolume(&g); }
  int64_t fan_out() const { return cdSparseConvMaxOutputsPerInput(&g); }
  // Sites of the output grid times max_batch: no conv can output more (kNoCap without max_batch).
  int64_t grid_cap() const {
    int64_t shape[3] = {0, 0, 0};
    if (g.max_batch <= 0 || cdSparseConvOutShape(&g, shape) != CD_CUDA_OK) return kNoCap;
    return static_cast<int64_t>(g.max_batch) * shape[0] * shape[1] * shape[2];
  }
  // The input-independent cap on a regular conv's output rows (kNoCap when none is known).
  int64_t row_cap() const { return max_out_rows > 0 ? std::min(grid_cap(), max_out_rows) : grid_cap(); }
  // Output rows allocated for n input rows.
  int64_t out_rows(int64_t n) const { return g.subm ? n : std::min(n * fan_out(), row_cap()); }
  // Is max_out_rows the binding cap for n inputs (then a frame may exceed it: checked at enqueue)?
  bool data_cap_binds(int64_t n) const {
    return !g.subm && max_out_rows > 0 && max_out_rows < std::min(n * fan_out(), grid_cap());
  }
  int64_t opt() const {
    const int64_t cap = row_cap();
    return std::min(opt_rows > 0 ? opt_rows : kDefaultOptRows, cap);
  }
  // upper bound and declared size tensor of a regular conv's output rows
  const nvinfer1::IDimensionExpr* declare_rows(nvinfer1::IExprBuilder& expr, int32_t output_index,
                                               const nvinfer1::IDimensionExpr& n) const {
    const nvinfer1::IDimensionExpr* upper =
        expr.operation(nvinfer1::DimensionOperation::kPROD, n, *expr.constant(fan_out()));
    if (row_cap() != kNoCap && upper)
      upper = expr.operation(nvinfer1::DimensionOperation::kMIN, *upper, *expr.constant(row_cap()));
    if (!upper) return nullptr;
    return expr.declareSizeTensor(output_index, *expr.constant(opt()), *upper);
  }

  void parse_geometry(const Fields& f) {
    namespace spec = clean_deploy::op_spec::sparse_convolution_trt;
    const auto k = f.ints(spec::kernel_size), sp = f.ints(spec::spatial_shape);
    const auto s = f.ints(spec::stride), p = f.ints(spec::padding), d = f.ints(spec::dilation);
    for (int a = 0; a < 3; ++a) {
      g.kernel[a] = static_cast<int32_t>(k[a]);
      g.stride[a] = static_cast<int32_t>(s[a]);
      g.padding[a] = static_cast<int32_t>(p[a]);
      g.dilation[a] = static_cast<int32_t>(d[a]);
      g.in_shape[a] = static_cast<int32_t>(sp[a]);
    }
    g.subm = f.int1(spec::subm) ? 1 : 0;
    g.max_batch = static_cast<int32_t>(f.int1(spec::max_batch));
    max_out_rows = f.int1(spec::max_out_rows);
    opt_rows = f.int1(spec::opt_rows);
    if (max_out_rows < 0 || opt_rows < 0 || g.max_batch < 0)
      throw std::invalid_argument("max_batch, max_out_rows and opt_rows must be >= 0");
    if (max_out_rows > INT32_MAX || opt_rows > INT32_MAX)  // serialised as int32 fields
      throw std::invalid_argument("max_out_rows and opt_rows must be < 2^31");
    if (cdSparseConvCheckGeometry(&g) != CD_CUDA_OK) throw std::invalid_argument(cdCudaLastError());
  }
  void parse_activation(const Fields& f) {
    activation = f.str(clean_deploy::op_spec::sparse_convolution_trt::activation);
    if (activation != "none" && activation != "relu")
      throw std::invalid_argument("activation must be \"relu\" or \"none\", got \"" + activation + "\"");
  }
  void write_geometry(FieldWriter& w) const {
    namespace spec = clean_deploy::op_spec::sparse_convolution_trt;
    w.add_ints(spec::kernel_size, {g.kernel[0], g.kernel[1], g.kernel[2]});
    w.add_ints(spec::stride, {g.stride[0], g.stride[1], g.stride[2]});
    w.add_ints(spec::padding, {g.padding[0], g.padding[1], g.padding[2]});
    w.add_ints(spec::dilation, {g.dilation[0], g.dilation[1], g.dilation[2]});
    w.add_ints(spec::subm, {g.subm});
    w.add_ints(spec::spatial_shape, {g.in_shape[0], g.in_shape[1], g.in_shape[2]});
    w.add_ints(spec::max_batch, {g.max_batch});
    w.add_ints(spec::max_out_rows, {static_cast<int32_t>(max_out_rows)});
    w.add_ints(spec::opt_rows, {static_cast<int32_t>(opt_rows)});
  }
};

bool is_float(const PluginTensorDesc& d) { return d.type == DataType::kFLOAT || d.type == DataType::kHALF; }
bool linear(const PluginTensorDesc& d) { return d.format == TensorFormat::kLINEAR; }

// Checks weight [Cout, kD, kH, kW, Cin] (and bias [Cout]) against the geometry and the features.
bool check_weights(const std::string& who, const ConvAttrs& a, const PluginTensorDesc& feat,
                   const PluginTensorDesc& weight, const PluginTensorDesc* bias) {
  const auto& w = weight.dims;
  if (w.nbDims != 5 || w.d[1] != a.g.kernel[0] || w.d[2] != a.g.kernel[1] || w.d[3] != a.g.kernel[2]) {
    log_error(who + ": weight must be [Cout, " + std::to_string(a.g.kernel[0]) + ", " + std::to_string(a.g.kernel[1]) +
              ", " + std::to_string(a.g.kernel[2]) + ", Cin] (kernel_size), got " + dims_str(w));
    return false;
  }
  if (feat.dims.nbDims != 2 || (feat.dims.d[1] >= 0 && feat.dims.d[1] != w.d[4])) {
    log_error(who + ": features must be [N, Cin] with Cin = weight's last dimension " + std::to_string(w.d[4]) +
              ", got " + dims_str(feat.dims));
    return false;
  }
  if (bias && (bias->dims.nbDims != 1 || bias->dims.d[0] != w.d[0])) {
    log_error(who + ": bias must be [Cout] = [" + std::to_string(w.d[0]) + "], got " + dims_str(bias->dims));
    return false;
  }
  return true;
}

// Workspace of one rulebook: [error flag][neighbour table][rulebook scratch].
struct RulebookLayout {
  size_t error = 0, neighbors = 0, scratch = 0, total = 0;
};

// Throws std::runtime_error with the kernel library's message when the size query fails (n too
// large for the kernels' int32 indexing, bad geometry).
RulebookLayout rulebook_layout(const ConvAttrs& a, int64_t n, bool own_neighbors) {
  RulebookLayout l;
  const int64_t max_out = a.out_rows(n);
  l.error = 0;
  l.neighbors = align_up(sizeof(int32_t));
  const size_t nbr_bytes = own_neighbors ? align_up(static_cast<size_t>(max_out * a.kernel_volume()) * 4) : 0;
  l.scratch = l.neighbors + nbr_bytes;
  const size_t rb = cdSparseConvRulebookWorkspaceSize(&a.g, n);
  if (rb == 0 && n > 0)
    throw std::runtime_error(std::string("rulebook workspace size query failed for ") + std::to_string(n) +
                             " input rows: " + cdCudaLastError());
  l.total = l.scratch + align_up(rb);
  return l;
}

// After a rulebook whose max_out_rows cap binds: reads the kernel's flags back (one stream sync) and
// fails when the frame produced more rows than the cap (the outputs would be truncated).
bool capacity_ok(const std::string& who, const ConvAttrs& a, int64_t n, const int32_t* d_error, cudaStream_t stream) {
  if (!a.data_cap_binds(n)) return true;
  int32_t flags = 0;
  if (cudaMemcpyAsync(&flags, d_error, sizeof(flags), cudaMemcpyDeviceToHost, stream) != cudaSuccess ||
      cudaStreamSynchronize(stream) != cudaSuccess) {
    log_error(who + ": could not read the rulebook's capacity flag");
    return false;
  }
  if (flags & CD_CUDA_DATA_CAPACITY) {
    log_error(who + ": this frame produces more output sites than max_out_rows=" + std::to_string(a.max_out_rows) +
              " (the cap taken from the calibration frames); rebuild the engine from a model prepared with a larger "
              "--row-margin or more calibration frames (plugins/prepare_onnx.py)");
    return false;
  }
  return true;
}

// Workspace bytes for n_max input rows, 0 (logged) when the size query fails. getWorkspaceSize cannot
// fail, so configurePlugin runs the same query first and fails on 0.
size_t workspace_bytes(const std::string& who, const ConvAttrs& a, int64_t n_max, bool own_neighbors) {
  try {
    return rulebook_layout(a, n_max, own_neighbors).total;
  } catch (const std::exception& e) {
    log_error(who + ": " + e.what());
    return 0;
  }
}

// ---- SparseConvolution (fused) ------------------------------------------------------------------

class SparseConvolutionPlugin final : public PluginBase {
 public:
  SparseConvolutionPlugin(std::string name, ConvAttrs attrs, int32_t num_inputs)
      : PluginBase(std::move(name)), a_(std::move(attrs)) {
    num_inputs_ = num_inputs;
  }

  const char* getPluginName() const noexcept override { return "SparseConvolution"; }
  nvinfer1::IPluginV3* clone() noexcept override {
    try {
      return new SparseConvolutionPlugin(layer_name_, a_, num_inputs_);
    } catch (...) {
      return nullptr;
    }
  }
  int32_t getNbOutputs() const noexcept override { return a_.g.subm ? 2 : 3; }

  int32_t getOutputDataTypes(DataType* out, int32_t nb_outputs, const DataType* in, int32_t nb_inputs) const noexcept override {
    if (nb_inputs < 3 || nb_outputs != getNbOutputs()) return 1;
    out[0] = in[0];
    for (int32_t i = 1; i < nb_outputs; ++i) out[i] = DataType::kINT32;
    return 0;
  }

  int32_t getOutputShapes(const DimsExprs* in, int32_t nb_inputs, const DimsExprs* shape_inputs, int32_t nb_shape_inputs,
                          DimsExprs* out, int32_t nb_outputs, IExprBuilder& expr) noexcept override {
    if (nb_inputs != 3 && nb_inputs != 4) {
      log_error(who() + ": expects 3 or 4 inputs (features, indices, weight[, bias]), got " + std::to_string(nb_inputs));
      return 1;
    }
    if (nb_outputs != getNbOutputs() || in[0].nbDims != 2 || in[1].nbDims != 2 || in[2].nbDims != 5) {
      log_error(who() + ": expects features [N, Cin], indices [N, 4], weight [Cout, kD, kH, kW, Cin] and " +
                std::to_string(getNbOutputs()) + " outputs" +
                (a_.g.subm ? "" : " (a regular conv also outputs num_out: run plugins/prepare_onnx.py on the model)"));
      return 1;
    }
    const nvinfer1::IDimensionExpr* n = in[1].d[0];
    const nvinfer1::IDimensionExpr* m = n;
    if (!a_.g.subm) {
      m = a_.declare_rows(expr, 2, *n);
      if (!m) return 1;
      out[2].nbDims = 0;
    }
    out[0].nbDims = 2;
    out[0].d[0] = m;
    out[0].d[1] = in[2].d[0];
    out[1].nbDims = 2;
    out[1].d[0] = m;
    out[1].d[1] = expr.constant(4);
    return 0;
  }

  bool supportsFormatCombination(int32_t pos, const DynamicPluginTensorDesc* io, int32_t nb_inputs,
                                 int32_t nb_outputs) noexcept override {
    const PluginTensorDesc& d = io[pos].desc;
    if (!linear(d)) return false;
    if (pos == 0) return is_float(d);
    if (pos == 1) return d.type == DataType::kINT32;
    if (pos < nb_inputs) return d.type == DataType::kFLOAT;  // weight, bias
    if (pos == nb_inputs) return d.type == io[0].desc.type;   // out_features
    return d.type == DataType::kINT32;                        // out_indices, num_out
  }

  int32_t configurePlugin(const DynamicPluginTensorDesc* in, int32_t nb_inputs, const DynamicPluginTensorDesc* out,
                          int32_t nb_outputs) noexcept override {
    try {
      num_inputs_ = nb_inputs;
      if (in[1].desc.dims.nbDims != 2 || (in[1].desc.dims.d[1] >= 0 && in[1].desc.dims.d[1] != 4)) {
        log_error(who() + ": indices must be [N, 4] int32, got " + dims_str(in[1].desc.dims));
        return 1;
      }
      if (!check_weights(who(), a_, in[0].desc, in[2].desc, nb_inputs == 4 ? &in[3].desc : nullptr)) return 1;
      return workspace_bytes(who(), a_, in[1].max.d[0], true) > 0 ? 0 : 1;
    } catch (...) {
      return 1;
    }
  }

  size_t getWorkspaceSize(const DynamicPluginTensorDesc* in, int32_t nb_inputs, const DynamicPluginTensorDesc* out,
                          int32_t nb_outputs) const noexcept override {
    return workspace_bytes(who(), a_, in[1].max.d[0], true);
  }

  int32_t enqueue(const PluginTensorDesc* in_desc, const PluginTensorDesc* out_desc, const void* const* inputs,
                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
    try {
      const int64_t n = in_desc[1].dims.d[0];
      const int32_t cin = static_cast<int32_t>(in_desc[0].dims.d[1]), cout = static_cast<int32_t>(in_desc[2].dims.d[0]);
      const int64_t K = a_.kernel_volume(), max_out = a_.out_rows(n);
      const RulebookLayout l = rulebook_layout(a_, n, true);
      char* ws = static_cast<char*>(workspace);
      auto* d_error = reinterpret_cast<int32_t*>(ws + l.error);
      auto* d_nbr = reinterpret_cast<int32_t*>(ws + l.neighbors);
      int32_t* d_num = a_.g.subm ? nullptr : static_cast<int32_t*>(outputs[2]);
      if (cudaMemsetAsync(d_error, 0, sizeof(int32_t), stream) != cudaSuccess) return 1;
      cdCudaStatus st = cdSparseConvRulebook(&a_.g, static_cast<const int32_t*>(inputs[1]), n, max_out,
                                             static_cast<int32_t*>(outputs[1]), d_nbr, d_num, d_error, ws + l.scratch,
                                             l.total - l.scratch, stream);
      if (st == CD_CUDA_OK)
        st = cdSparseConvGemm(in_desc[0].type == DataType::kHALF ? CD_FLOAT16 : CD_FLOAT32, inputs[0], n, cin, d_nbr,
                              max_out, d_num, static_cast<int32_t>(K), static_cast<const float*>(inputs[2]),
                              num_inputs_ == 4 ? static_cast<const float*>(inputs[3]) : nullptr, cout, a_.relu(),
                              outputs[0], stream);
      if (st != CD_CUDA_OK) {
        log_error(who() + ": " + cdCudaStatusName(st) + ": " + cdCudaLastError());
        return 1;
      }
      if (!capacity_ok(who(), a_, n, d_error, stream)) return 1;
      if (sync_check_enabled()) report_data_errors(who(), d_error, stream);
      return 0;
    } catch (const std::exception& e) {
      log_error(who() + ": " + e.what());
      return 1;
    } catch (...) {
      return 1;
    }
  }

  const nvinfer1::PluginFieldCollection* getFieldsToSerialize() noexcept override {
    serial_ = FieldWriter();
    a_.write_geometry(serial_);
    serial_.add_string(clean_deploy::op_spec::sparse_convolution_trt::activation, a_.activation);
    serial_.add_ints("num_inputs", {num_inputs_});
    return serial_.collection();
  }

 private:
  ConvAttrs a_;
};

// ---- SparseConvIndexPairs ----------------------------------------------------------------------

class IndexPairsPlugin final : public PluginBase {
 public:
  IndexPairsPlugin(std::string name, ConvAttrs attrs) : PluginBase(std::move(name)), a_(std::move(attrs)) {}

  const char* getPluginName() const noexcept override { return "SparseConvIndexPairs"; }
  nvinfer1::IPluginV3* clone() noexcept override {
    try {
      return new IndexPairsPlugin(layer_name_, a_);
    } catch (...) {
      return nullptr;
    }
  }
  int32_t getNbOutputs() const noexcept override { return a_.g.subm ? 1 : 3; }

  int32_t getOutputDataTypes(DataType* out, int32_t nb_outputs, const DataType* in, int32_t nb_inputs) const noexcept override {
    for (int32_t i = 0; i < nb_outputs; ++i) out[i] = DataType::kINT32;
    return 0;
  }

  int32_t getOutputShapes(const DimsExprs* in, int32_t nb_inputs, const DimsExprs* shape_inputs, int32_t nb_shape_inputs,
                          DimsExprs* out, int32_t nb_outputs, IExprBuilder& expr) noexcept override {
    if (nb_inputs != 1 || in[0].nbDims != 2 || nb_outputs != getNbOutputs()) {
      log_error(who() + ": expects one input indices [N, 4] and " + std::to_string(getNbOutputs()) + " outputs");
      return 1;
    }
    const nvinfer1::IDimensionExpr* n = in[0].d[0];
    const nvinfer1::IDimensionExpr* k = expr.constant(a_.kernel_volume());
    if (a_.g.subm) {
      out[0].nbDims = 2;
      out[0].d[0] = n;
      out[0].d[1] = k;
      return 0;
    }
    const nvinfer1::IDimensionExpr* m = a_.declare_rows(expr, 2, *n);
    if (!m) return 1;
    out[0].nbDims = 2;
    out[0].d[0] = m;
    out[0].d[1] = expr.constant(4);
    out[1].nbDims = 2;
    out[1].d[0] = m;
    out[1].d[1] = k;
    out[2].nbDims = 0;
    return 0;
  }

  bool supportsFormatCombination(int32_t pos, const DynamicPluginTensorDesc* io, int32_t nb_inputs,
                                 int32_t nb_outputs) noexcept override {
    return linear(io[pos].desc) && io[pos].desc.type == DataType::kINT32;
  }

  int32_t configurePlugin(const DynamicPluginTensorDesc* in, int32_t nb_inputs, const DynamicPluginTensorDesc* out,
                          int32_t nb_outputs) noexcept override {
    if (in[0].desc.dims.nbDims != 2 || (in[0].desc.dims.d[1] >= 0 && in[0].desc.dims.d[1] != 4)) {
      log_error(who() + ": indices must be [N, 4] int32, got " + dims_str(in[0].desc.dims));
      return 1;
    }
    return workspace_bytes(who(), a_, in[0].max.d[0], false) > 0 ? 0 : 1;
  }

  size_t getWorkspaceSize(const DynamicPluginTensorDesc* in, int32_t nb_inputs, const DynamicPluginTensorDesc* out,
                          int32_t nb_outputs) const noexcept override {
    return workspace_bytes(who(), a_, in[0].max.d[0], false);
  }

  int32_t enqueue(const PluginTensorDesc* in_desc, const PluginTensorDesc* out_desc, const void* const* inputs,
                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
    try {
      const int64_t n = in_desc[0].dims.d[0];
      const RulebookLayout l = rulebook_layout(a_, n, false);
      char* ws = static_cast<char*>(workspace);
      auto* d_error = reinterpret_cast<int32_t*>(ws + l.error);
      if (cudaMemsetAsync(d_error, 0, sizeof(int32_t), stream) != cudaSuccess) return 1;
      const auto* idx = static_cast<const int32_t*>(inputs[0]);
      const cdCudaStatus st =
          a_.g.subm ? cdSparseConvRulebook(&a_.g, idx, n, n, nullptr, static_cast<int32_t*>(outputs[0]), nullptr,
                                           d_error, ws + l.scratch, l.total - l.scratch, stream)
                    : cdSparseConvRulebook(&a_.g, idx, n, a_.out_rows(n), static_cast<int32_t*>(outputs[0]),
                                           static_cast<int32_t*>(outputs[1]), static_cast<int32_t*>(outputs[2]),
                                           d_error, ws + l.scratch, l.total - l.scratch, stream);
      if (st != CD_CUDA_OK) {
        log_error(who() + ": " + cdCudaStatusName(st) + ": " + cdCudaLastError());
        return 1;
      }
      if (!capacity_ok(who(), a_, n, d_error, stream)) return 1;
      if (sync_check_enabled()) report_data_errors(who(), d_error, stream);
      return 0;
    } catch (const std::exception& e) {
      log_error(who() + ": " + e.what());
      return 1;
    } catch (...) {
      return 1;
    }
  }

  const nvinfer1::PluginFieldCollection* getFieldsToSerialize() noexcept override {
    serial_ = FieldWriter();
    a_.write_geometry(serial_);
    return serial_.collection();
  }

 private:
  ConvAttrs a_;
};

// ---- SparseConvGemm ------------------------------------------------------------------------------

class GemmPlugin final : public PluginBase {
 public:
  GemmPlugin(std::string name, std::string activation, int32_t num_inputs)
      : PluginBase(std::move(name)), activation_(std::move(activation)) {
    num_inputs_ = num_inputs;
  }

  const char* getPluginName() const noexcept override { return "SparseConvGemm"; }
  nvinfer1::IPluginV3* clone() noexcept override {
    try {
      return new GemmPlugin(layer_name_, activation_, num_inputs_);
    } catch (...) {
      return nullptr;
    }
  }
  int32_t getNbOutputs() const noexcept override { return 1; }

  int32_t getOutputDataTypes(DataType* out, int32_t nb_outputs, const DataType* in, int32_t nb_inputs) const noexcept override {
    if (nb_inputs < 3 || nb_outputs != 1) return 1;
    out[0] = in[0];
    return 0;
  }

  int32_t getOutputShapes(const DimsExprs* in, int32_t nb_inputs, const DimsExprs* shape_inputs, int32_t nb_shape_inputs,
                          DimsExprs* out, int32_t nb_outputs, IExprBuilder& expr) noexcept override {
    if ((nb_inputs != 3 && nb_inputs != 4) || in[0].nbDims != 2 || in[1].nbDims != 2 || in[2].nbDims != 5) {
      log_error(who() + ": expects features [N, Cin], neighbors [M, K], weight [Cout, kD, kH, kW, Cin][, bias [Cout]]");
      return 1;
    }
    out[0].nbDims = 2;
    out[0].d[0] = in[1].d[0];
    out[0].d[1] = in[2].d[0];
    return 0;
  }

  bool supportsFormatCombination(int32_t pos, const DynamicPluginTensorDesc* io, int32_t nb_inputs,
                                 int32_t nb_outputs) noexcept override {
    const PluginTensorDesc& d = io[pos].desc;
    if (!linear(d)) return false;
    if (pos == 0) return is_float(d);
    if (pos == 1) return d.type == DataType::kINT32;
    if (pos < nb_inputs) return d.type == DataType::kFLOAT;
    return d.type == io[0].desc.type;
  }

  int32_t configurePlugin(const DynamicPluginTensorDesc* in, int32_t nb_inputs, const DynamicPluginTensorDesc* out,
                          int32_t nb_outputs) noexcept override {
    num_inputs_ = nb_inputs;
    const auto& w = in[2].desc.dims;
    const auto& nb = in[1].desc.dims;
    if (w.nbDims != 5 || nb.nbDims != 2 || (nb.d[1] >= 0 && nb.d[1] != w.d[1] * w.d[2] * w.d[3])) {
      log_error(who() + ": neighbors [M, K] must have K = kD * kH * kW of weight " + dims_str(w) + ", got " + dims_str(nb));
      return 1;
    }
    if (in[0].desc.dims.nbDims != 2 || (in[0].desc.dims.d[1] >= 0 && in[0].desc.dims.d[1] != w.d[4])) {
      log_error(who() + ": features must be [N, Cin] with Cin = " + std::to_string(w.d[4]) + ", got " +
                dims_str(in[0].desc.dims));
      return 1;
    }
    if (nb_inputs == 4 && (in[3].desc.dims.nbDims != 1 || in[3].desc.dims.d[0] != w.d[0])) {
      log_error(who() + ": bias must be [Cout], got " + dims_str(in[3].desc.dims));
      return 1;
    }
    return 0;
  }

  int32_t enqueue(const PluginTensorDesc* in_desc, const PluginTensorDesc* out_desc, const void* const* inputs,
                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
    const int64_t n = in_desc[0].dims.d[0], m = in_desc[1].dims.d[0];
    const cdCudaStatus st = cdSparseConvGemm(
        in_desc[0].type == DataType::kHALF ? CD_FLOAT16 : CD_FLOAT32, inputs[0], n,
        static_cast<int32_t>(in_desc[0].dims.d[1]), static_cast<const int32_t*>(inputs[1]), m, nullptr,
        static_cast<int32_t>(in_desc[1].dims.d[1]), static_cast<const float*>(inputs[2]),
        num_inputs_ == 4 ? static_cast<const float*>(inputs[3]) : nullptr,
        static_cast<int32_t>(in_desc[2].dims.d[0]), activation_ == "relu", outputs[0], stream);
    if (st != CD_CUDA_OK) {
      log_error(who() + ": " + cdCudaStatusName(st) + ": " + cdCudaLastError());
      return 1;
    }
    return 0;
  }

  const nvinfer1::PluginFieldCollection* getFieldsToSerialize() noexcept override {
    serial_ = FieldWriter();
    serial_.add_string(clean_deploy::op_spec::sparse_conv_gemm::activation, activation_);
    serial_.add_ints("num_inputs", {num_inputs_});
    return serial_.collection();
  }

 private:
  std::string activation_;
};

// ---- creators ------------------------------------------------------------------------------------

template <class Make>
nvinfer1::IPluginV3* create_guarded(const char* plugin, const char* name, Make make) {
  try {
    return make();
  } catch (const std::exception& e) {
    log_error(std::string(plugin) + " '" + (name ? name : "") + "': " + e.what());
  } catch (...) {
    log_error(std::string(plugin) + " '" + (name ? name : "") + "': unknown error");
  }
  return nullptr;
}

class SparseConvolutionCreator final : public CreatorBase {
 public:
  SparseConvolutionCreator() { declared_.declare(clean_deploy::op_spec::sparse_convolution_trt::kAttrs); }
  const char* getPluginName() const noexcept override { return "SparseConvolution"; }
  nvinfer1::IPluginV3* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    return create_guarded("SparseConvolution", name, [&] {
      Fields f(fc);
      ConvAttrs a;
      a.parse_geometry(f);
      a.parse_activation(f);
      const int64_t unknown = -1;  // the layer's input count, known from configurePlugin on
      return new SparseConvolutionPlugin(name ? name : "", a, static_cast<int32_t>(f.int1("num_inputs", &unknown)));
    });
  }
};

class IndexPairsCreator final : public CreatorBase {
 public:
  IndexPairsCreator() { declared_.declare(clean_deploy::op_spec::sparse_conv_index_pairs::kAttrs); }
  const char* getPluginName() const noexcept override { return "SparseConvIndexPairs"; }
  nvinfer1::IPluginV3* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    return create_guarded("SparseConvIndexPairs", name, [&] {
      Fields f(fc);
      ConvAttrs a;
      a.parse_geometry(f);
      return new IndexPairsPlugin(name ? name : "", a);
    });
  }
};

class GemmCreator final : public CreatorBase {
 public:
  GemmCreator() { declared_.declare(clean_deploy::op_spec::sparse_conv_gemm::kAttrs); }
  const char* getPluginName() const noexcept override { return "SparseConvGemm"; }
  nvinfer1::IPluginV3* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    return create_guarded("SparseConvGemm", name, [&] {
      Fields f(fc);
      ConvAttrs a;
      a.parse_activation(f);
      const int64_t unknown = -1;
      return new GemmPlugin(name ? name : "", a.activation, static_cast<int32_t>(f.int1("num_inputs", &unknown)));
    });
  }
};

}  // namespace

nvinfer1::IPluginCreatorInterface* sparse_convolution_creator() {
  static SparseConvolutionCreator creator;
  return &creator;
}
nvinfer1::IPluginCreatorInterface* sparse_conv_index_pairs_creator() {
  static IndexPairsCreator creator;
  return &creator;
}
nvinfer1::IPluginCreatorInterface* sparse_conv_gemm_creator() {
  static GemmCreator creator;
  return &creator;
}

}  // namespace clean_deploy_trt
