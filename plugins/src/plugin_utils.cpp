// Logging, attribute parsing / serialisation and IPluginV3 boilerplate of the clean_deploy plugins.
#include "plugin_utils.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace clean_deploy_trt {

// ---- logging --------------------------------------------------------------------------------------

namespace {
std::mutex g_log_mutex;
nvinfer1::ILoggerFinder* g_logger_finder = nullptr;
}  // namespace

void set_logger_finder(nvinfer1::ILoggerFinder* finder) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_logger_finder = finder;
}

void log(nvinfer1::ILogger::Severity severity, const std::string& message) {
  nvinfer1::ILogger* logger = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    if (g_logger_finder) logger = g_logger_finder->findLogger();
  }
  const std::string text = "[clean_deploy] " + message;
  if (logger) {
    logger->log(severity, text.c_str());
  } else if (severity <= nvinfer1::ILogger::Severity::kWARNING) {
    std::cerr << text << std::endl;
  }
}

bool sync_check_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("CLEAN_DEPLOY_TRT_SYNC_CHECK");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return enabled;
}

int32_t report_data_errors(const std::string& who, const int32_t* d_error, cudaStream_t stream) {
  int32_t flags = 0;
  if (cudaMemcpyAsync(&flags, d_error, sizeof(flags), cudaMemcpyDeviceToHost, stream) != cudaSuccess ||
      cudaStreamSynchronize(stream) != cudaSuccess) {
    log_error(who + ": CLEAN_DEPLOY_TRT_SYNC_CHECK could not read the error flags");
    return 0;
  }
  if (flags & CD_CUDA_DATA_SITE_OUT_OF_RANGE)
    // the kernels' flag also covers batch >= max_batch (the attribute plugins/prepare_onnx.py sets to 1)
    log_error(who + ": an indices row lies outside spatial_shape or its batch is negative or >= max_batch; it was "
              "ignored");
  if (flags & CD_CUDA_DATA_DUPLICATE_SITE) log_error(who + ": two indices rows are the same site; active sites must be unique");
  if (flags & CD_CUDA_DATA_CAPACITY) log_error(who + ": more output sites than the output capacity; outputs truncated");
  return flags;
}

// ---- attributes -----------------------------------------------------------------------------------

Fields::Fields(const nvinfer1::PluginFieldCollection* fc) {
  if (!fc) return;
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    const nvinfer1::PluginField& f = fc->fields[i];
    if (!f.name || (!f.data && f.length > 0)) continue;
    const std::string name(f.name);
    std::vector<double> v;
    switch (f.type) {
      case nvinfer1::PluginFieldType::kINT32:
        for (int32_t j = 0; j < f.length; ++j) v.push_back(static_cast<const int32_t*>(f.data)[j]);
        break;
      case nvinfer1::PluginFieldType::kINT64:
        for (int32_t j = 0; j < f.length; ++j) v.push_back(static_cast<double>(static_cast<const int64_t*>(f.data)[j]));
        break;
      case nvinfer1::PluginFieldType::kINT16:
        for (int32_t j = 0; j < f.length; ++j) v.push_back(static_cast<const int16_t*>(f.data)[j]);
        break;
      case nvinfer1::PluginFieldType::kINT8:
        for (int32_t j = 0; j < f.length; ++j) v.push_back(static_cast<const int8_t*>(f.data)[j]);
        break;
      case nvinfer1::PluginFieldType::kFLOAT32:
        for (int32_t j = 0; j < f.length; ++j) v.push_back(static_cast<const float*>(f.data)[j]);
        break;
      case nvinfer1::PluginFieldType::kFLOAT64:
        for (int32_t j = 0; j < f.length; ++j) v.push_back(static_cast<const double*>(f.data)[j]);
        break;
      case nvinfer1::PluginFieldType::kCHAR: {
        // the ONNX parser counts the terminating NUL in `length`; serialised fields may not
        const char* s = static_cast<const char*>(f.data);
        strings_[name] = std::string(s, strnlen(s, static_cast<size_t>(f.length)));
        continue;
      }
      default:
        continue;  // other types are never produced for our attributes
    }
    numbers_[name] = std::move(v);
  }
}

std::vector<int64_t> Fields::ints(const std::string& name, size_t length, const std::vector<int64_t>* fallback) const {
  const auto it = numbers_.find(name);
  if (it == numbers_.end()) {
    if (fallback) return *fallback;
    throw std::invalid_argument(prefix() + "required attribute '" + name + "' is missing");
  }
  if (length && it->second.size() != length)
    throw std::invalid_argument(prefix() + "attribute '" + name + "' must have " + std::to_string(length) +
                                " values, got " + std::to_string(it->second.size()));
  std::vector<int64_t> out;
  for (double d : it->second) out.push_back(static_cast<int64_t>(d));
  return out;
}

int64_t Fields::int1(const std::string& name, const int64_t* fallback) const {
  std::vector<int64_t> fb;
  if (fallback) fb.push_back(*fallback);
  return ints(name, 1, fallback ? &fb : nullptr)[0];
}

std::vector<double> Fields::floats(const std::string& name, size_t min_length, const std::vector<double>* fallback) const {
  const auto it = numbers_.find(name);
  if (it == numbers_.end()) {
    if (fallback) return *fallback;
    throw std::invalid_argument(prefix() + "required attribute '" + name + "' is missing");
  }
  if (it->second.size() < min_length)
    throw std::invalid_argument(prefix() + "attribute '" + name + "' needs at least " + std::to_string(min_length) +
                                " values, got " + std::to_string(it->second.size()));
  return it->second;
}

double Fields::float1(const std::string& name, const double* fallback) const {
  std::vector<double> fb;
  if (fallback) fb.push_back(*fallback);
  return floats(name, 1, fallback ? &fb : nullptr)[0];
}

std::string Fields::str(const std::string& name, const std::string* fallback) const {
  const auto it = strings_.find(name);
  if (it == strings_.end()) {
    if (fallback) return *fallback;
    throw std::invalid_argument(prefix() + "required attribute '" + name + "' is missing");
  }
  return it->second;
}

std::vector<int64_t> Fields::ints(const clean_deploy::op_spec::Attr& a) const {
  const std::vector<int64_t> fallback(a.ints, a.ints + (a.count > 0 ? a.count : 0));
  return ints(a.name, a.count > 0 ? static_cast<size_t>(a.count) : 0, a.required ? nullptr : &fallback);
}

int64_t Fields::int1(const clean_deploy::op_spec::Attr& a) const {
  return int1(a.name, a.required ? nullptr : &a.ints[0]);
}

double Fields::float1(const clean_deploy::op_spec::Attr& a) const {
  return float1(a.name, a.required ? nullptr : &a.real);
}

std::string Fields::str(const clean_deploy::op_spec::Attr& a) const {
  const std::string fallback = a.str ? a.str : "";
  return str(a.name, a.required ? nullptr : &fallback);
}

void FieldWriter::add_ints(const char* name, const std::vector<int32_t>& values) {
  auto blob = std::make_unique<std::vector<char>>(values.size() * sizeof(int32_t));
  if (!values.empty()) std::memcpy(blob->data(), values.data(), blob->size());
  fields_.emplace_back(name, blob->data(), nvinfer1::PluginFieldType::kINT32, static_cast<int32_t>(values.size()));
  blobs_.push_back(std::move(blob));
}

void FieldWriter::add_floats(const char* name, const std::vector<float>& values) {
  auto blob = std::make_unique<std::vector<char>>(values.size() * sizeof(float));
  if (!values.empty()) std::memcpy(blob->data(), values.data(), blob->size());
  fields_.emplace_back(name, blob->data(), nvinfer1::PluginFieldType::kFLOAT32, static_cast<int32_t>(values.size()));
  blobs_.push_back(std::move(blob));
}

void FieldWriter::add_string(const char* name, const std::string& value) {
  auto blob = std::make_unique<std::vector<char>>(value.begin(), value.end());
  blob->push_back('\0');
  fields_.emplace_back(name, blob->data(), nvinfer1::PluginFieldType::kCHAR, static_cast<int32_t>(blob->size()));
  blobs_.push_back(std::move(blob));
}

void FieldWriter::declare(const char* name, nvinfer1::PluginFieldType type, int32_t length) {
  fields_.emplace_back(name, nullptr, type, length);
}

void FieldWriter::declare(const clean_deploy::op_spec::Attr& a) {
  using clean_deploy::op_spec::Kind;
  const int32_t length = a.kind == Kind::kString || a.count < 0 ? 0 : a.count;
  const nvinfer1::PluginFieldType type = a.kind == Kind::kString                       ? nvinfer1::PluginFieldType::kCHAR
                                         : a.kind == Kind::kInt || a.kind == Kind::kInts ? nvinfer1::PluginFieldType::kINT32
                                                                                         : nvinfer1::PluginFieldType::kFLOAT32;
  declare(a.name, type, length);
}

const nvinfer1::PluginFieldCollection* FieldWriter::collection() {
  fc_.nbFields = static_cast<int32_t>(fields_.size());
  fc_.fields = fields_.data();
  return &fc_;
}

// ---- boilerplate ----------------------------------------------------------------------------------

nvinfer1::IPluginCapability* PluginBase::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

std::string PluginBase::who() const { return std::string(getPluginName()) + " '" + layer_name_ + "'"; }

int64_t volume(const nvinfer1::Dims& d) {
  int64_t v = 1;
  for (int32_t i = 0; i < d.nbDims; ++i) v *= d.d[i];
  return v;
}

std::string dims_str(const nvinfer1::Dims& d) {
  std::ostringstream s;
  s << "[";
  for (int32_t i = 0; i < d.nbDims; ++i) s << (i ? ", " : "") << d.d[i];
  s << "]";
  return s.str();
}

size_t element_size(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT64: return 8;
    default: return 4;
  }
}

}  // namespace clean_deploy_trt
