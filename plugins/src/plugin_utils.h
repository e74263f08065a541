// Shared pieces of the clean_deploy TensorRT plugins: naming, logging through TensorRT's logger,
// reading node attributes from a PluginFieldCollection (as the ONNX parser or deserialisation hands
// them over) and writing them back for serialisation, and the IPluginV3 boilerplate.
//
// The plugins are thin: shapes, types and attributes here; all GPU work is in the CUDA C API
// (csrc/cuda/include/clean_deploy_cuda.h), which CI compiles and tests.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "clean_deploy/op_spec.h"
#include "clean_deploy_cuda.h"

namespace clean_deploy_trt {

// Plugin namespace = the ONNX domain of the nodes; every plugin has version "1" (ONNX opset 1 of
// the domain). TensorRT's ONNX parser looks a node up by (op_type, plugin_version attribute or "1",
// plugin_namespace attribute or "", then the node's domain).
constexpr char kNamespace[] = "clean_deploy";
constexpr char kVersion[] = "1";

// ---- logging ------------------------------------------------------------------------------------

void set_logger_finder(nvinfer1::ILoggerFinder* finder);
void log(nvinfer1::ILogger::Severity severity, const std::string& message);
inline void log_error(const std::string& message) { log(nvinfer1::ILogger::Severity::kERROR, message); }
inline void log_warning(const std::string& message) { log(nvinfer1::ILogger::Severity::kWARNING, message); }

// "CLEAN_DEPLOY_TRT_SYNC_CHECK=1": after each enqueue, synchronise the stream and report the
// kernels' data flags (out-of-range / duplicate sites, capacity). For debugging only: it stalls.
bool sync_check_enabled();
// Synchronises `stream`, reads the device int32 `d_error` and logs its flags for `who`.
int32_t report_data_errors(const std::string& who, const int32_t* d_error, cudaStream_t stream);

// ---- attributes -----------------------------------------------------------------------------------

// Attribute values by name, parsed from any PluginFieldType the parser may use (INT/INTS arrive as
// kINT32, FLOAT/FLOATS as kFLOAT32, STRING as kCHAR; kINT64/kFLOAT64/kINT8/kINT16 are accepted too).
class Fields {
 public:
  explicit Fields(const nvinfer1::PluginFieldCollection* fc);
  bool has(const std::string& name) const { return numbers_.count(name) || strings_.count(name); }
  // Throws std::invalid_argument naming the plugin and attribute when absent (required) or of the
  // wrong length.
  std::vector<int64_t> ints(const std::string& name, size_t length, const std::vector<int64_t>* fallback) const;
  int64_t int1(const std::string& name, const int64_t* fallback) const;
  std::vector<double> floats(const std::string& name, size_t min_length, const std::vector<double>* fallback) const;
  double float1(const std::string& name, const double* fallback) const;
  std::string str(const std::string& name, const std::string* fallback) const;
  // By the attribute's specification (clean_deploy/op_spec.h): name, fixed length, default.
  bool has(const clean_deploy::op_spec::Attr& a) const { return has(a.name); }
  std::vector<int64_t> ints(const clean_deploy::op_spec::Attr& a) const;
  int64_t int1(const clean_deploy::op_spec::Attr& a) const;
  double float1(const clean_deploy::op_spec::Attr& a) const;
  std::string str(const clean_deploy::op_spec::Attr& a) const;
  std::vector<double> floats(const clean_deploy::op_spec::Attr& a, size_t min_length,
                             const std::vector<double>* fallback) const {
    return floats(a.name, min_length, fallback);
  }
  void set_owner(std::string owner) { owner_ = std::move(owner); }

 private:
  std::string prefix() const { return owner_.empty() ? std::string() : owner_ + ": "; }
  std::string owner_;
  std::map<std::string, std::vector<double>> numbers_;
  std::map<std::string, std::string> strings_;
};

// Owns the memory of a PluginFieldCollection (getFieldsToSerialize, getFieldNames).
class FieldWriter {
 public:
  void add_ints(const char* name, const std::vector<int32_t>& values);
  void add_floats(const char* name, const std::vector<float>& values);
  void add_string(const char* name, const std::string& value);
  void add_ints(const clean_deploy::op_spec::Attr& a, const std::vector<int32_t>& values) { add_ints(a.name, values); }
  void add_floats(const clean_deploy::op_spec::Attr& a, const std::vector<float>& values) { add_floats(a.name, values); }
  void add_string(const clean_deploy::op_spec::Attr& a, const std::string& value) { add_string(a.name, value); }
  // Declarations only (getFieldNames): name, type and length, no data.
  void declare(const char* name, nvinfer1::PluginFieldType type, int32_t length);
  // ... of an attribute: its spec's type and fixed length (0: variable, strings)
  void declare(const clean_deploy::op_spec::Attr& a);
  template <size_t N>
  void declare(const clean_deploy::op_spec::Attr* const (&attrs)[N]) {
    for (const auto* a : attrs) declare(*a);
  }
  const nvinfer1::PluginFieldCollection* collection();

 private:
  std::vector<std::unique_ptr<std::vector<char>>> blobs_;
  std::vector<nvinfer1::PluginField> fields_;
  nvinfer1::PluginFieldCollection fc_{};
};

// ---- IPluginV3 boilerplate ----------------------------------------------------------------------

// A plugin object implements the three capability interfaces itself.
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
 public:
  explicit PluginBase(std::string layer_name) : layer_name_(std::move(layer_name)) {}
  ~PluginBase() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  // IPluginV3OneCore
  const char* getPluginVersion() const noexcept override { return kVersion; }
  const char* getPluginNamespace() const noexcept override { return kNamespace; }
  // IPluginV3OneRuntime
  int32_t onShapeChange(const nvinfer1::PluginTensorDesc* in, int32_t nb_inputs, const nvinfer1::PluginTensorDesc* out,
                        int32_t nb_outputs) noexcept override {
    num_inputs_ = nb_inputs;
    return 0;
  }
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override {
    return clone();
  }

  void set_num_inputs(int32_t n) { num_inputs_ = n; }

 protected:
  // "<plugin> '<layer name>'" for messages.
  std::string who() const;
  std::string layer_name_;
  FieldWriter serial_;    // storage of getFieldsToSerialize
  int32_t num_inputs_ = -1;  // inputs of the layer (optional ones absent): from configurePlugin /
                             // onShapeChange, serialised as the field "num_inputs"
};

// Creator boilerplate: name, version, namespace, field declarations; createPlugin in the subclass.
class CreatorBase : public nvinfer1::IPluginCreatorV3One {
 public:
  const char* getPluginVersion() const noexcept override { return kVersion; }
  const char* getPluginNamespace() const noexcept override { return kNamespace; }
  const nvinfer1::PluginFieldCollection* getFieldNames() noexcept override { return declared_.collection(); }

 protected:
  FieldWriter declared_;
};

// Element count of a Dims (product of the extents).
int64_t volume(const nvinfer1::Dims& d);
std::string dims_str(const nvinfer1::Dims& d);
size_t element_size(nvinfer1::DataType t);

// The creators of this library (registration.cpp).
nvinfer1::IPluginCreatorInterface* sparse_convolution_creator();
nvinfer1::IPluginCreatorInterface* sparse_conv_index_pairs_creator();
nvinfer1::IPluginCreatorInterface* sparse_conv_gemm_creator();
nvinfer1::IPluginCreatorInterface* redundancy_elimination_creator();

}  // namespace clean_deploy_trt
