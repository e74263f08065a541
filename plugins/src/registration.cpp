// Entry points of libclean_deploy_trt_plugins.so, the two that TensorRT's own plugin libraries export
// and IPluginRegistry::loadLibrary looks up (trtexec --dynamicPlugins, polygraphy --plugins,
// IRuntime/IBuilder plugin registries, engines built with --setPluginsToSerialize):
//   getCreators()      the creators of the clean_deploy plugins (namespace "clean_deploy", version "1");
//                      the registry that loads the library registers them
//   setLoggerFinder()  where the plugins find TensorRT's logger
// Nothing else is exported (plugins/exports.map) and nothing runs at load time: the library does not
// touch the global registry and so does not link libnvinfer. A C++ application that wants the
// creators in a registry of its own calls getCreators() and registers them there.
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

}  // namespace
}  // namespace clean_deploy_trt

extern "C" {

CD_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { clean_deploy_trt::set_logger_finder(finder); }

CD_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  return clean_deploy_trt::creator_list(nbCreators);
}

}  // extern "C"
