// TensorRT's logger for the plugin test programs (plugin_harness.cpp, plugin_enqueue_emu.cpp): keeps
// every warning and error the plugins log, in order; Finder hands it to the library through
// setLoggerFinder as TensorRT's runtime would.
#pragma once

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace fake_trt {

class CaptureLogger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) messages.emplace_back(msg);
  }
  // the latest warning or error since clear(), "" if none
  std::string last() const { return messages.size() > mark_ ? messages.back() : std::string(); }
  void clear() { mark_ = messages.size(); }
  std::vector<std::string> messages;

 private:
  size_t mark_ = 0;
};

class Finder final : public nvinfer1::ILoggerFinder {
 public:
  explicit Finder(nvinfer1::ILogger* l) : logger_(l) {}
  nvinfer1::ILogger* findLogger() noexcept override { return logger_; }

 private:
  nvinfer1::ILogger* logger_;
};

}  // namespace fake_trt
