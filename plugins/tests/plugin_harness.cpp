// CPU harness of libclean_deploy_trt_plugins.so: drives the sparse conv plugins through TensorRT's
// IPluginV3 interfaces, as TensorRT's builder would, without TensorRT (no libnvinfer) and without a
// GPU. The IExprBuilder is a fake (fake_expr_builder.h) that evaluates every dimension expression at
// its upper bound, so the declared output shapes, size tensors and workspace sizes of a whole network
// can be summed. (plugin_enqueue_emu.cpp runs the plugins' enqueue on emulated kernels.)
//
//   plugin_harness <libclean_deploy_trt_plugins.so> --self-test
//   plugin_harness <libclean_deploy_trt_plugins.so> --layers layers.txt --max-voxels N
//
// --self-test checks one strided conv against hand-computed bounds (with and without caps), that
// `opt` is a constant, the serialised fields round trip (new plugin from getFieldsToSerialize, same
// bounds), format combinations, and that an impossible size fails configurePlugin with a message.
// Without a CUDA device the workspace of a strided conv is unknown (CUB's radix-sort size query
// needs one): configurePlugin must then fail with a message naming the layer, and the network sum
// counts the outputs and the neighbour tables (rows x K int32) but not CUB's scratch.
// --layers reads one regular or submanifold conv per line, in network order:
//   name subm kD kH kW sD sH sW pD pH pW dD dH dW inZ inY inX max_batch max_out_rows opt_rows cin cout
// chains the row counts (a submanifold layer keeps its input rows, a regular one has the declared
// upper bound) starting from --max-voxels, and prints one JSON object per layer and a total:
// output bytes (features float32 + indices int32) and workspace bytes.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "capture_logger.h"
#include "clean_deploy/testing/check.h"
#include "fake_expr_builder.h"

using namespace nvinfer1;

namespace {

using clean_deploy::testing::g_checks;
using clean_deploy::testing::g_failures;
using fake_trt::CaptureLogger;
using fake_trt::Finder;

// ---- fake expressions (fake_expr_builder.h): inputs at their upper bounds ----------------------
using fake_trt::Builder;
using fake_trt::BuilderImpl;
using fake_trt::SizeTensorDecl;
using fake_trt::value_of;

// ---- the library -------------------------------------------------------------------------------
struct Library {
  IPluginCreatorV3One* sparse_conv = nullptr;
  void (*set_logger_finder)(ILoggerFinder*) = nullptr;
};

Library open_library(const char* path) {
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::fprintf(stderr, "plugin_harness: cannot load %s: %s\n", path, dlerror());
    std::exit(2);
  }
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  auto get = reinterpret_cast<GetCreators>(dlsym(h, "getCreators"));
  Library lib;
  lib.set_logger_finder = reinterpret_cast<void (*)(ILoggerFinder*)>(dlsym(h, "setLoggerFinder"));
  if (!get || !lib.set_logger_finder) {
    std::fprintf(stderr, "plugin_harness: %s lacks getCreators/setLoggerFinder\n", path);
    std::exit(2);
  }
  int32_t n = 0;
  IPluginCreatorInterface* const* list = get(n);
  for (int32_t i = 0; i < n; ++i) {
    if (std::strcmp(list[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0) continue;
    auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
    if (std::strcmp(c->getPluginName(), "SparseConvolution") == 0) lib.sparse_conv = c;
  }
  if (!lib.sparse_conv) {
    std::fprintf(stderr, "plugin_harness: no SparseConvolution creator in %s\n", path);
    std::exit(2);
  }
  return lib;
}

// ---- one layer ---------------------------------------------------------------------------------
struct Layer {
  std::string name;
  int32_t subm = 0, k[3] = {3, 3, 3}, s[3] = {1, 1, 1}, p[3] = {0, 0, 0}, d[3] = {1, 1, 1}, in[3] = {0, 0, 0};
  int32_t max_batch = 0, max_out_rows = 0, opt_rows = 0, cin = 16, cout = 16;
};

struct Fields {
  std::vector<PluginField> f;
  std::vector<std::vector<int32_t>> store;
  std::string act = "none";
  void add(const char* n, std::vector<int32_t> v) {
    store.push_back(std::move(v));
    f.emplace_back(n, store.back().data(), PluginFieldType::kINT32, static_cast<int32_t>(store.back().size()));
  }
  PluginFieldCollection collection() {
    f.emplace_back("activation", act.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(act.size()));
    return PluginFieldCollection{static_cast<int32_t>(f.size()), f.data()};
  }
};

IPluginV3* create(const Library& lib, const Layer& L) {
  Fields fs;
  fs.store.reserve(16);
  fs.add("kernel_size", {L.k[0], L.k[1], L.k[2]});
  fs.add("stride", {L.s[0], L.s[1], L.s[2]});
  fs.add("padding", {L.p[0], L.p[1], L.p[2]});
  fs.add("dilation", {L.d[0], L.d[1], L.d[2]});
  fs.add("subm", {L.subm});
  fs.add("spatial_shape", {L.in[0], L.in[1], L.in[2]});
  fs.add("max_batch", {L.max_batch});
  fs.add("max_out_rows", {L.max_out_rows});
  fs.add("opt_rows", {L.opt_rows});
  PluginFieldCollection fc = fs.collection();
  return lib.sparse_conv->createPlugin(L.name.c_str(), &fc, TensorRTPhase::kBUILD);
}

struct Shapes {
  int ok = 1;
  int64_t rows = -1;         // output rows (upper bound)
  int64_t workspace = 0;
  int32_t configure = -1;
  SizeTensorDecl decl;
};

Dims dims2(int64_t a, int64_t b) {
  Dims d{};
  d.nbDims = 2;
  d.d[0] = a;
  d.d[1] = b;
  return d;
}

Shapes shapes(IPluginV3* plugin, const Layer& L, int64_t n) {
  Shapes r;
  auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  BuilderImpl impl;
  Builder expr(&impl);
  DimsExprs in[4]{};
  in[0].nbDims = 2;
  in[0].d[0] = impl.make(n, false);
  in[0].d[1] = impl.constant(L.cin);
  in[1].nbDims = 2;
  in[1].d[0] = in[0].d[0];
  in[1].d[1] = impl.constant(4);
  in[2].nbDims = 5;
  in[2].d[0] = impl.constant(L.cout);
  for (int a = 0; a < 3; ++a) in[2].d[1 + a] = impl.constant(L.k[a]);
  in[2].d[4] = impl.constant(L.cin);
  in[3].nbDims = 1;
  in[3].d[0] = impl.constant(L.cout);
  const int32_t nb_out = L.subm ? 2 : 3;
  DimsExprs out[3]{};
  r.ok = build->getOutputShapes(in, 4, nullptr, 0, out, nb_out, expr) == 0;
  if (!r.ok) return r;
  r.rows = value_of(*out[0].d[0]);
  if (!impl.declared.empty()) r.decl = impl.declared.back();
  DynamicPluginTensorDesc din[4]{}, dout[3]{};
  const int64_t shape_in[4][2] = {{n, L.cin}, {n, 4}, {0, 0}, {L.cout, 0}};
  for (int i = 0; i < 2; ++i) {
    din[i].desc.dims = dims2(-1, shape_in[i][1]);
    din[i].min = dims2(0, shape_in[i][1]);
    din[i].max = dims2(n, shape_in[i][1]);
    din[i].opt = din[i].max;
    din[i].desc.format = TensorFormat::kLINEAR;
  }
  din[0].desc.type = DataType::kFLOAT;
  din[1].desc.type = DataType::kINT32;
  din[2].desc.dims.nbDims = 5;
  din[2].desc.dims.d[0] = L.cout;
  for (int a = 0; a < 3; ++a) din[2].desc.dims.d[1 + a] = L.k[a];
  din[2].desc.dims.d[4] = L.cin;
  din[2].desc.type = DataType::kFLOAT;
  din[3].desc.dims.nbDims = 1;
  din[3].desc.dims.d[0] = L.cout;
  din[3].desc.type = DataType::kFLOAT;
  for (int i = 2; i < 4; ++i) din[i].min = din[i].max = din[i].opt = din[i].desc.dims;
  r.configure = build->configurePlugin(din, 4, dout, nb_out);
  if (r.configure == 0) r.workspace = static_cast<int64_t>(build->getWorkspaceSize(din, 4, dout, nb_out));
  return r;
}

int64_t out_volume(const Layer& L) {
  int64_t v = 1;
  for (int a = 0; a < 3; ++a)
    v *= L.subm ? L.in[a] : (static_cast<int64_t>(L.in[a]) + 2 * L.p[a] - L.d[a] * (L.k[a] - 1) - 1) / L.s[a] + 1;
  return v;
}

// ---- --self-test ---------------------------------------------------------------------------------
int self_test(const Library& lib, CaptureLogger& logger) {
  Layer L;
  L.name = "conv2";
  L.subm = 0;
  L.s[0] = L.s[1] = L.s[2] = 2;
  L.p[0] = L.p[1] = L.p[2] = 1;
  L.in[0] = 41;
  L.in[1] = 1600;
  L.in[2] = 1408;
  L.cin = 16;
  L.cout = 32;
  const int64_t n = 40000, fan = 8;  // k3 s2: each input feeds at most 2 outputs per axis
  // no caps: the old bound N * fan-out, a constant opt
  bool gpu = true;
  {
    IPluginV3* p = create(lib, L);
    CHECK(p != nullptr, "createPlugin failed: %s", logger.last().c_str());
    logger.clear();
    const Shapes s = shapes(p, L, n);
    CHECK(s.ok && s.rows == n * fan, "rows %lld", static_cast<long long>(s.rows));
    CHECK(s.decl.output == 2 && s.decl.opt_constant && s.decl.opt == 16384, "opt %lld", static_cast<long long>(s.decl.opt));
    gpu = s.configure == 0;
    if (gpu) {
      CHECK(s.workspace > 0, "workspace %lld", static_cast<long long>(s.workspace));
    } else {
      CHECK(logger.last().find("SparseConvolution 'conv2'") != std::string::npos &&
                logger.last().find("size query") != std::string::npos,
            "no-device failure without a clear message: '%s'", logger.last().c_str());
      std::printf("plugin_harness: no CUDA device: strided-conv workspaces not checked (%s)\n", logger.last().c_str());
    }
    delete p;
  }
  // max_batch: capped by the output grid's volume once that is the smaller
  {
    Layer B = L;
    B.in[0] = 5;
    B.in[1] = 40;
    B.in[2] = 40;  // output grid 3 x 20 x 20 = 1200
    B.max_batch = 2;
    IPluginV3* p = create(lib, B);
    const Shapes s = shapes(p, B, n);
    CHECK(s.rows == 2 * out_volume(B) && out_volume(B) == 1200, "rows %lld", static_cast<long long>(s.rows));
    CHECK(s.decl.opt == 2400 && s.decl.opt_constant, "opt %lld", static_cast<long long>(s.decl.opt));
    delete p;
  }
  // max_out_rows + opt_rows: the data-derived cap; serialised fields round trip to the same bounds
  {
    Layer C = L;
    C.max_batch = 1;
    C.max_out_rows = 70000;
    C.opt_rows = 50000;
    IPluginV3* p = create(lib, C);
    const Shapes s = shapes(p, C, n);
    CHECK(s.rows == 70000 && s.decl.opt == 50000, "rows %lld opt %lld", static_cast<long long>(s.rows),
          static_cast<long long>(s.decl.opt));
    auto* core = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    const PluginFieldCollection* fc = core->getFieldsToSerialize();
    IPluginV3* q = lib.sparse_conv->createPlugin("conv2_copy", fc, TensorRTPhase::kRUNTIME);
    CHECK(q != nullptr, "createPlugin from serialised fields failed: %s", logger.last().c_str());
    if (q) {
      const Shapes t = shapes(q, C, n);
        CHECK(t.rows == s.rows && t.decl.opt == s.decl.opt && t.workspace == s.workspace, "round trip differs");
      delete q;
    }
    // workspace follows the cap: smaller than without it
    IPluginV3* u = create(lib, L);
    const Shapes su = shapes(u, L, n);
    if (gpu)
      CHECK(s.workspace < su.workspace, "capped workspace %lld !< %lld", static_cast<long long>(s.workspace),
            static_cast<long long>(su.workspace));
    // format combinations: float/half features, int32 indices, float weights, out features = in type
    auto* build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
    DynamicPluginTensorDesc io[7]{};
    for (auto& d : io) d.desc.format = TensorFormat::kLINEAR;
    io[0].desc.type = DataType::kHALF;
    io[1].desc.type = DataType::kINT32;
    io[2].desc.type = io[3].desc.type = DataType::kFLOAT;
    io[4].desc.type = DataType::kHALF;
    io[5].desc.type = io[6].desc.type = DataType::kINT32;
    for (int pos = 0; pos < 7; ++pos) CHECK(build->supportsFormatCombination(pos, io, 4, 3), "pos %d refused", pos);
    io[4].desc.type = DataType::kFLOAT;  // out features must follow the input's type
    CHECK(!build->supportsFormatCombination(4, io, 4, 3), "mixed feature types accepted");
    io[1].desc.type = DataType::kINT64;
    CHECK(!build->supportsFormatCombination(1, io, 4, 3), "int64 indices accepted");
    delete u;
    delete p;
  }
  // an input too large for the kernels: configurePlugin fails and says why
  {
    IPluginV3* p = create(lib, L);
    logger.clear();
    const Shapes s = shapes(p, L, int64_t(1) << 31);
    CHECK(s.configure != 0, "configurePlugin accepted 2^31 rows");
    CHECK(logger.last().find("2147483648") != std::string::npos, "message lacks the size: '%s'", logger.last().c_str());
    // the kernels' size check refuses it before any device query (so this holds with or without a GPU)
    CHECK(logger.last().find("cudaError") == std::string::npos, "refused only by the device query: '%s'",
          logger.last().c_str());
    CHECK(logger.last().find("conv2") != std::string::npos, "message lacks the layer name: '%s'", logger.last().c_str());
    delete p;
  }
  // bad attributes are refused at creation with a message
  {
    Layer Bad = L;
    Bad.max_out_rows = -5;
    logger.clear();
    IPluginV3* p = create(lib, Bad);
    CHECK(p == nullptr && logger.last().find("max_out_rows") != std::string::npos, "'%s'", logger.last().c_str());
    delete p;
  }
  std::printf("plugin_harness self-test: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}

// ---- --layers --------------------------------------------------------------------------------------
int network(const Library& lib, CaptureLogger& logger, const char* path, int64_t max_voxels) {
  std::ifstream f(path);
  if (!f) {
    std::fprintf(stderr, "plugin_harness: cannot read %s\n", path);
    return 2;
  }
  std::string line;
  int64_t n = max_voxels, out_bytes = 0, max_ws = 0;
  int count = 0;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    Layer L;
    is >> L.name >> L.subm;
    for (int32_t* arr : {L.k, L.s, L.p, L.d, L.in})
      for (int a = 0; a < 3; ++a) is >> arr[a];
    is >> L.max_batch >> L.max_out_rows >> L.opt_rows >> L.cin >> L.cout;
    if (!is) {
      std::fprintf(stderr, "plugin_harness: %s: bad line '%s'\n", path, line.c_str());
      return 2;
    }
    IPluginV3* p = create(lib, L);
    if (!p) return 2;
    logger.clear();
    const Shapes s = shapes(p, L, n);
    delete p;
    // without a device only CUB's size query may fail (strided convs); anything else is an error
    const bool no_device = s.configure != 0 && !L.subm && logger.last().find("size query") != std::string::npos &&
                           logger.last().find("cudaError") != std::string::npos;
    if (!s.ok || (s.configure != 0 && !no_device)) {
      std::fprintf(stderr, "plugin_harness: layer %s failed: %s\n", L.name.c_str(), logger.last().c_str());
      return 1;
    }
    const int64_t K = static_cast<int64_t>(L.k[0]) * L.k[1] * L.k[2];
    const int64_t bytes = s.rows * L.cout * 4 + (L.subm ? 0 : s.rows * 4 * 4);
    // known part of the workspace: the workspace itself, or (no device) the neighbour table
    const int64_t ws = no_device ? s.rows * K * 4 : s.workspace;
    out_bytes += bytes;
    max_ws = ws > max_ws ? ws : max_ws;
    std::printf("{\"layer\": \"%s\", \"subm\": %d, \"in_rows\": %lld, \"out_rows\": %lld, \"opt\": %lld, "
                "\"output_bytes\": %lld, \"workspace_bytes\": %lld, \"workspace_complete\": %s}\n",
                L.name.c_str(), L.subm, static_cast<long long>(n), static_cast<long long>(s.rows),
                static_cast<long long>(L.subm ? -1 : s.decl.opt), static_cast<long long>(bytes),
                static_cast<long long>(ws), no_device ? "false" : "true");
    n = s.rows;
    ++count;
  }
  std::printf("{\"total\": true, \"layers\": %d, \"output_bytes\": %lld, \"max_workspace_bytes\": %lld, "
              "\"bound_bytes\": %lld}\n",
              count, static_cast<long long>(out_bytes), static_cast<long long>(max_ws),
              static_cast<long long>(out_bytes + max_ws));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: plugin_harness LIB --self-test | --layers FILE --max-voxels N\n");
    return 2;
  }
  Library lib = open_library(argv[1]);
  CaptureLogger logger;
  Finder finder(&logger);
  lib.set_logger_finder(&finder);
  if (std::strcmp(argv[2], "--self-test") == 0) return self_test(lib, logger);
  if (std::strcmp(argv[2], "--layers") == 0 && argc == 6 && std::strcmp(argv[4], "--max-voxels") == 0)
    return network(lib, logger, argv[3], std::atoll(argv[5]));
  std::fprintf(stderr, "usage: plugin_harness LIB --self-test | --layers FILE --max-voxels N\n");
  return 2;
}
