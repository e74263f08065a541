// Registration of the clean_deploy TensorRT plugins (namespace "clean_deploy", version "1"):
//  - at load time (dlopen: trtexec --staticPlugins, polygraphy --plugins, ctypes.CDLL, or linking the
//    library) every creator is registered in TensorRT's global plugin registry;
//  - getCreators() / setLoggerFinder() are the entry points of IPluginRegistry::loadLibrary
//    (trtexec --dynamicPlugins, IBuilder/IRuntime plugin registries, engines that serialise the
//    library with --setPluginsToSerialize). loadLibrary registers the creators it gets from
//    getCreators() itself, so the load-time registrations are withdrawn first (no duplicates);
//  - initCleanDeployTrtPlugins() registers them again explicitly for C++ applications.
#include <mutex>

#include "plugin_utils.h"

#if defined(_WIN32)
#define CD_TRT_EXPORT __declspec(dllexport)
#else
#define CD_TRT_EXPORT __attribute__((visibility("default")))
#endif

namespace clean_deploy_trt {
namespace {

nvinfer1::IPluginCreatorInterface* const* creator_list(int32_t& count) {
  static nvinfer1::IPluginCreatorInterface* const list[] = {
      sparse_convolution_creator(), sparse_conv_index_pairs_creator(), sparse_conv_gemm_creator(),
      redundancy_elimination_creator()};
  count = static_cast<int32_t>(sizeof(list) / sizeof(list[0]));
  return list;
}

std::mutex g_mutex;
bool g_registered = false;  // our creators are in the global registry

bool register_all() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_registered) return true;
  nvinfer1::IPluginRegistry* registry = getPluginRegistry();
  if (!registry) return false;
  int32_t n = 0;
  nvinfer1::IPluginCreatorInterface* const* list = creator_list(n);
  bool ok = true;
  for (int32_t i = 0; i < n; ++i) ok = registry->registerCreator(*list[i], kNamespace) && ok;
  g_registered = true;
  return ok;
}

void withdraw_all() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_registered) return;
  nvinfer1::IPluginRegistry* registry = getPluginRegistry();
  if (!registry) return;
  int32_t n = 0;
  nvinfer1::IPluginCreatorInterface* const* list = creator_list(n);
  for (int32_t i = 0; i < n; ++i) registry->deregisterCreator(*list[i]);
  g_registered = false;
}

struct LoadTimeRegistration {
  LoadTimeRegistration() { register_all(); }
} g_load_time_registration;

}  // namespace
}  // namespace clean_deploy_trt

extern "C" {

CD_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { clean_deploy_trt::set_logger_finder(finder); }

CD_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  clean_deploy_trt::withdraw_all();
  return clean_deploy_trt::creator_list(nbCreators);
}

// For C++ applications that link the library: (re)registers the creators in the global registry.
CD_TRT_EXPORT bool initCleanDeployTrtPlugins() { return clean_deploy_trt::register_all(); }

}  // extern "C"
