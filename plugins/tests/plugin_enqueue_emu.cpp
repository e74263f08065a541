// plugin_enqueue_emu: the TensorRT plugins' enqueue paths without TensorRT and without a GPU.
//
// csrc/cuda/tests/emu/run_plugin_emulation.sh links this driver with the plugin sources
// (plugins/src/*.cpp, compiled against TensorRT's public headers) and with the CUDA kernels converted
// to host code (csrc/cuda/tests/emu: kernel launches are loops, "device" memory is host memory), and
// with the CPU kernels (libclean_deploy_cpu.a) as the reference. For every plugin it does what
// TensorRT would do with a node of a prepared ONNX model (plugins/prepare_onnx.py):
//   - the ONNX parser: finds the creator in the library's own getCreators() by name, version and
//     namespace, and hands createPlugin(kBUILD) the node's attributes the creator declares in
//     getFieldNames(), converted to the declared types (an attribute the creator does not declare
//     would be dropped by the parser: a failure here);
//   - the builder: getOutputDataTypes, getOutputShapes (fake IExprBuilder, fake_expr_builder.h, with
//     the frame's sizes as the dynamic extents), supportsFormatCombination, configurePlugin (profile
//     max = the frame), getWorkspaceSize, and enqueue on the build-phase plugin (as for timing);
//   - the runtime: getFieldsToSerialize -> createPlugin(kRUNTIME) -> attachToContext -> onShapeChange
//     -> enqueue, with output buffers of the size getOutputShapes declared and exactly
//     getWorkspaceSize bytes of workspace, each ending at an inaccessible page (an overrun faults)
//     after guard bytes that must stay untouched; the inputs must come back unchanged.
// The outputs are compared with the CPU kernels: sparse conv output sites (the documented order:
// inputs' order for submanifold convs, sorted (batch, z, y, x) for regular ones), neighbour tables
// exactly, features to 1e-5 relative (float16 storage: 1e-3); redundancy elimination boxes, scores,
// labels and valid_count per frame. A frame producing more rows than a conv's max_out_rows must make
// enqueue fail with a message naming the plugin and the layer (no silent truncation). A child process
// with CLEAN_DEPLOY_TRT_SYNC_CHECK=1 checks that invalid sites (duplicates, outside the grid or
// max_batch), which the kernels skip, are logged with the layer's name, and that a valid frame is not.
//
// Not covered: TensorRT itself (its builder, tactic selection, memory planning, the real ONNX
// parser), real CUDA (streams, asynchrony, warp scheduling, CUB, the GPU's math library) and the
// workspace sizes CUB asks for on a real device. Prints "plugin_enqueue_emu: N checks, M failed".
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "clean_deploy/parallel.h"
#include "clean_deploy/redundancy.h"
#include "clean_deploy/sparse_conv.h"
#include "clean_deploy/half_bits.h"
#include "capture_logger.h"
#include "clean_deploy/testing/check.h"
#include "fake_expr_builder.h"

using namespace nvinfer1;

// the library's entry points (plugins/src/registration.cpp), linked in statically here
extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);

namespace {

using clean_deploy::testing::g_checks;
using clean_deploy::testing::g_failures;
using fake_trt::CaptureLogger;
using fake_trt::Finder;

CaptureLogger g_logger;

// ---- "device" buffers: host memory ending at an inaccessible page ---------------------------------
// A buffer's bytes end where its 256-byte rounding ends, and that is the start of a PROT_NONE page:
// a kernel (or plugin) reading or writing past the rounded end faults at once; the rounding slack
// holds guard bytes that must stay untouched.
constexpr unsigned char kGuardByte = 0xA5, kGarbage = 0xCD;

class DevBuf {
 public:
  explicit DevBuf(size_t bytes, unsigned char fill = kGarbage) : bytes_(bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    rounded_ = (bytes + 255) / 256 * 256;  // cudaMalloc's alignment
    const size_t body = (rounded_ + page - 1) / page * page;
    map_bytes_ = body + page;
    void* m = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(static_cast<char*>(m) + body, page, PROT_NONE) != 0) {
      std::fprintf(stderr, "plugin_enqueue_emu: mmap/mprotect failed\n");
      std::exit(2);
    }
    map_ = static_cast<unsigned char*>(m);
    base_ = map_ + body - rounded_;
    std::memset(base_, fill, bytes);
    std::memset(base_ + bytes, kGuardByte, rounded_ - bytes);
  }
  ~DevBuf() { munmap(map_, map_bytes_); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  // TensorRT may bind an empty tensor to nullptr; so does this driver
  void* ptr() const { return bytes_ ? base_ : nullptr; }
  size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const {
    return reinterpret_cast<T*>(base_);
  }
  bool guard_intact() const {
    for (size_t i = bytes_; i < rounded_; ++i)
      if (base_[i] != kGuardByte) return false;
    return true;
  }

 private:
  unsigned char *map_ = nullptr, *base_ = nullptr;
  size_t bytes_ = 0, rounded_ = 0, map_bytes_ = 0;
};

using Shape = std::vector<int64_t>;

int64_t volume(const Shape& s) {
  int64_t v = 1;
  for (int64_t d : s) v *= d;
  return v;
}

size_t element_size(DataType t) { return t == DataType::kHALF ? 2 : 4; }

Dims to_dims(const Shape& s) {
  Dims d{};
  d.nbDims = static_cast<int32_t>(s.size());
  for (size_t i = 0; i < s.size(); ++i) d.d[i] = s[i];
  return d;
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

using clean_deploy::half_bits::from_half;
using clean_deploy::half_bits::to_half;

// ---- the ONNX parser's part ---------------------------------------------------------------------
// An ONNX node attribute: INT / INTS, FLOAT / FLOATS or STRING.
struct Attr {
  enum Kind { kInts, kFloats, kString } kind = kInts;
  std::vector<int64_t> i;
  std::vector<double> f;
  std::string s;
};
using Attrs = std::map<std::string, Attr>;

Attr ints(std::vector<int64_t> v) {
  Attr a;
  a.kind = Attr::kInts;
  a.i = std::move(v);
  return a;
}
Attr floats(std::vector<double> v) {
  Attr a;
  a.kind = Attr::kFloats;
  a.f = std::move(v);
  return a;
}
Attr str(std::string s) {
  Attr a;
  a.kind = Attr::kString;
  a.s = std::move(s);
  return a;
}

// The PluginFieldCollection TensorRT's ONNX parser builds for a node: one field per field the
// creator declares (getFieldNames) that the node has, converted to the declared type; STRING
// attributes as kCHAR with the terminating NUL counted in `length`.
class ParsedFields {
 public:
  ParsedFields(IPluginCreatorV3One* creator, const Attrs& attrs, const std::string& node) {
    const PluginFieldCollection* declared = creator->getFieldNames();
    CHECK(declared != nullptr, "%s: getFieldNames returned null", node.c_str());
    std::map<std::string, bool> used;
    for (int32_t i = 0; declared && i < declared->nbFields; ++i) {
      const PluginField& d = declared->fields[i];
      const auto it = attrs.find(d.name);
      if (it == attrs.end()) continue;  // the parser warns; the plugin's default applies
      used[d.name] = true;
      const Attr& a = it->second;
      std::vector<char> blob;
      int32_t length = 0;
      auto put = [&](const void* p, size_t n) {
        const char* c = static_cast<const char*>(p);
        blob.insert(blob.end(), c, c + n);
      };
      const bool numeric = a.kind != Attr::kString;
      const size_t count = a.kind == Attr::kInts ? a.i.size() : a.f.size();
      auto value = [&](size_t j) { return a.kind == Attr::kInts ? static_cast<double>(a.i[j]) : a.f[j]; };
      switch (d.type) {
        case PluginFieldType::kINT32:
          CHECK(a.kind == Attr::kInts, "%s: attribute %s is not INT(S) but declared kINT32", node.c_str(), d.name);
          for (size_t j = 0; j < count; ++j) {
            const int32_t v = static_cast<int32_t>(value(j));
            put(&v, 4);
          }
          length = static_cast<int32_t>(count);
          break;
        case PluginFieldType::kINT64:
          CHECK(a.kind == Attr::kInts, "%s: attribute %s is not INT(S) but declared kINT64", node.c_str(), d.name);
          for (size_t j = 0; j < count; ++j) {
            const int64_t v = static_cast<int64_t>(value(j));
            put(&v, 8);
          }
          length = static_cast<int32_t>(count);
          break;
        case PluginFieldType::kFLOAT32:
          CHECK(numeric, "%s: attribute %s is a string but declared kFLOAT32", node.c_str(), d.name);
          for (size_t j = 0; numeric && j < count; ++j) {
            const float v = static_cast<float>(value(j));
            put(&v, 4);
          }
          length = static_cast<int32_t>(count);
          break;
        case PluginFieldType::kCHAR:
          CHECK(a.kind == Attr::kString, "%s: attribute %s is not a STRING but declared kCHAR", node.c_str(), d.name);
          put(a.s.c_str(), a.s.size() + 1);
          length = static_cast<int32_t>(a.s.size() + 1);
          break;
        default:
          CHECK(false, "%s: field %s has a type this driver does not convert", node.c_str(), d.name);
          continue;
      }
      blobs_.push_back(std::make_unique<std::vector<char>>(std::move(blob)));
      fields_.emplace_back(d.name, blobs_.back()->data(), d.type, length);
    }
    for (const auto& [name, a] : attrs) {
      // plugin_namespace / plugin_version select the creator; everything else must be declared
      if (name == "plugin_namespace" || name == "plugin_version") continue;
      CHECK(used.count(name), "%s: attribute '%s' is not declared by the creator: TensorRT's parser would drop it",
            node.c_str(), name.c_str());
    }
    fc_.nbFields = static_cast<int32_t>(fields_.size());
    fc_.fields = fields_.data();
  }
  const PluginFieldCollection* collection() const { return &fc_; }

 private:
  std::vector<std::unique_ptr<std::vector<char>>> blobs_;
  std::vector<PluginField> fields_;
  PluginFieldCollection fc_{};
};

IPluginCreatorV3One* find_creator(const char* name) {
  int32_t n = 0;
  IPluginCreatorInterface* const* list = getCreators(n);
  for (int32_t i = 0; i < n; ++i) {
    if (std::strcmp(list[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0) continue;
    auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
    if (std::strcmp(c->getPluginName(), name) == 0 && std::strcmp(c->getPluginVersion(), "1") == 0 &&
        std::strcmp(c->getPluginNamespace(), "clean_deploy") == 0)
      return c;
  }
  return nullptr;
}

// ---- one plugin node, from parsing to the runtime enqueue ------------------------------------------
struct Input {
  DataType type = DataType::kFLOAT;
  Shape shape;
  std::vector<bool> dynamic;  // extents known at run time only (profile min 0, max = this frame)
  const DevBuf* data = nullptr;
};

struct Expect {
  std::vector<DataType> out_types;
  int32_t size_tensors = 0;  // declared size tensors (regular convs: 1)
  bool workspace = true;     // getWorkspaceSize must be > 0
};

struct Outcome {
  bool built = false;     // every build-time call succeeded
  int32_t status = -1;    // the runtime plugin's enqueue
  int32_t status_build = -1;  // the build-phase plugin's enqueue
  std::vector<Shape> out_shapes;  // as allocated: getOutputShapes at this frame (size tensors at their bound)
  std::vector<fake_trt::SizeTensorDecl> declared;
  size_t workspace = 0;
  std::vector<std::unique_ptr<DevBuf>> outs;
  std::string log;  // what the plugins logged
};

struct PluginDeleter {
  void operator()(IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<IPluginV3, PluginDeleter>;

// Runs one enqueue of `plugin` on fresh outputs/workspace; returns its status and fills `outs`.
int32_t enqueue_once(const char* node, IPluginV3* plugin, const std::vector<Input>& ins,
                     const std::vector<DataType>& out_types, const std::vector<Shape>& out_shapes, size_t workspace,
                     std::vector<std::unique_ptr<DevBuf>>& outs) {
  auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  std::vector<PluginTensorDesc> in_desc(ins.size()), out_desc(out_types.size());
  std::vector<const void*> in_ptrs;
  for (size_t i = 0; i < ins.size(); ++i) {
    in_desc[i].dims = to_dims(ins[i].shape);
    in_desc[i].type = ins[i].type;
    in_desc[i].format = TensorFormat::kLINEAR;
    in_ptrs.push_back(ins[i].data ? ins[i].data->ptr() : nullptr);
  }
  outs.clear();
  std::vector<void*> out_ptrs;
  for (size_t o = 0; o < out_types.size(); ++o) {
    out_desc[o].dims = to_dims(out_shapes[o]);
    out_desc[o].type = out_types[o];
    out_desc[o].format = TensorFormat::kLINEAR;
    outs.push_back(std::make_unique<DevBuf>(static_cast<size_t>(volume(out_shapes[o])) * element_size(out_types[o])));
    out_ptrs.push_back(outs.back()->ptr());
  }
  CHECK(rt->onShapeChange(in_desc.data(), static_cast<int32_t>(ins.size()), out_desc.data(),
                          static_cast<int32_t>(out_types.size())) == 0,
        "%s: onShapeChange failed", node);
  // the inputs must come back unchanged (TensorRT may share them with other layers)
  std::vector<std::vector<unsigned char>> before;
  for (const auto& in : ins)
    before.emplace_back(in.data ? in.data->as<unsigned char>() : nullptr,
                        in.data ? in.data->as<unsigned char>() + in.data->bytes() : nullptr);
  DevBuf ws(workspace);
  const int32_t status = rt->enqueue(in_desc.data(), out_desc.data(), in_ptrs.data(), out_ptrs.data(), ws.ptr(), nullptr);
  CHECK(ws.guard_intact(), "%s: enqueue wrote past the %zu-byte workspace of getWorkspaceSize", node, workspace);
  bool outs_ok = true, ins_ok = true;
  for (const auto& o : outs) outs_ok &= o->guard_intact();
  for (size_t i = 0; i < ins.size(); ++i)
    ins_ok &= !ins[i].data || std::memcmp(before[i].data(), ins[i].data->as<unsigned char>(), before[i].size()) == 0;
  CHECK(outs_ok, "%s: enqueue wrote past an output of the size getOutputShapes declared", node);
  CHECK(ins_ok, "%s: enqueue modified an input", node);
  return status;
}

Outcome run_node(const char* plugin_name, const std::string& node, const Attrs& attrs, const std::vector<Input>& ins,
                 const Expect& want) {
  Outcome r;
  const size_t log_mark = g_logger.messages.size();
  auto since = [&]() {
    std::string s;
    for (size_t i = log_mark; i < g_logger.messages.size(); ++i) s += g_logger.messages[i] + "\n";
    return s;
  };
  auto finish = [&]() {
    r.log = since();
    return std::move(r);
  };
  IPluginCreatorV3One* creator = find_creator(plugin_name);
  CHECK(creator != nullptr, "no creator %s (version 1, namespace clean_deploy) in getCreators()", plugin_name);
  if (!creator) return finish();
  const ParsedFields fields(creator, attrs, node);
  PluginPtr plugin(creator->createPlugin(node.c_str(), fields.collection(), TensorRTPhase::kBUILD));
  CHECK(plugin != nullptr, "%s: createPlugin(kBUILD) failed: %s", node.c_str(), since().c_str());
  if (!plugin) return finish();
  auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
  auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  CHECK(core && build && runtime, "%s: a capability interface is missing", node.c_str());
  if (!core || !build || !runtime) return finish();
  CHECK(std::strcmp(core->getPluginName(), plugin_name) == 0 && std::strcmp(core->getPluginNamespace(), "clean_deploy") == 0,
        "%s: plugin name/namespace %s/%s", node.c_str(), core->getPluginName(), core->getPluginNamespace());

  const int32_t nb_in = static_cast<int32_t>(ins.size());
  const int32_t nb_out = build->getNbOutputs();
  CHECK(nb_out == static_cast<int32_t>(want.out_types.size()), "%s: %d outputs, expected %zu", node.c_str(), nb_out,
        want.out_types.size());
  if (nb_out != static_cast<int32_t>(want.out_types.size())) return finish();

  // types
  std::vector<DataType> in_types, out_types(static_cast<size_t>(nb_out), DataType::kBOOL);
  for (const auto& in : ins) in_types.push_back(in.type);
  CHECK(build->getOutputDataTypes(out_types.data(), nb_out, in_types.data(), nb_in) == 0 && out_types == want.out_types,
        "%s: getOutputDataTypes", node.c_str());

  // shapes, through the fake expression builder at this frame's sizes
  fake_trt::BuilderImpl impl;
  fake_trt::Builder expr(&impl);
  std::vector<DimsExprs> in_expr(ins.size()), out_expr(static_cast<size_t>(nb_out));
  for (size_t i = 0; i < ins.size(); ++i) {
    in_expr[i].nbDims = static_cast<int32_t>(ins[i].shape.size());
    for (size_t a = 0; a < ins[i].shape.size(); ++a)
      in_expr[i].d[a] = ins[i].dynamic[a] ? impl.make(ins[i].shape[a], false) : impl.constant(ins[i].shape[a]);
  }
  const int32_t shapes_status = build->getOutputShapes(in_expr.data(), nb_in, nullptr, 0, out_expr.data(), nb_out, expr);
  CHECK(shapes_status == 0, "%s: getOutputShapes failed: %s", node.c_str(), since().c_str());
  if (shapes_status != 0) return finish();
  for (const auto& e : out_expr) {
    Shape s;
    for (int32_t a = 0; a < e.nbDims; ++a) s.push_back(fake_trt::value_of(*e.d[a]));
    r.out_shapes.push_back(s);
  }
  r.declared = impl.declared;
  CHECK(static_cast<int32_t>(r.declared.size()) == want.size_tensors, "%s: %zu size tensors declared, expected %d",
        node.c_str(), r.declared.size(), want.size_tensors);
  for (const auto& d : r.declared) {
    CHECK(d.opt_constant && d.opt >= 0 && d.output >= 0 && d.output < nb_out && r.out_shapes[d.output].empty(),
          "%s: size tensor output %d (opt %lld, constant %d) must be a 0-D output with a constant opt", node.c_str(),
          d.output, static_cast<long long>(d.opt), d.opt_constant);
  }

  // formats: the types above in linear layout, and no other layout
  std::vector<DynamicPluginTensorDesc> io(ins.size() + static_cast<size_t>(nb_out));
  for (size_t i = 0; i < io.size(); ++i) {
    const bool is_in = i < ins.size();
    const Shape& s = is_in ? ins[i].shape : r.out_shapes[i - ins.size()];
    io[i].desc.type = is_in ? ins[i].type : out_types[i - ins.size()];
    io[i].desc.format = TensorFormat::kLINEAR;
    io[i].desc.dims = to_dims(s);
    Shape mn = s;
    for (size_t a = 0; a < s.size(); ++a) {
      const bool dynamic = is_in ? ins[i].dynamic[a] : !out_expr[i - ins.size()].d[a]->isConstant();
      if (dynamic) io[i].desc.dims.d[a] = -1, mn[a] = 0;
    }
    io[i].min = to_dims(mn);
    io[i].opt = io[i].max = to_dims(s);
  }
  bool formats = true;
  for (int32_t pos = 0; pos < nb_in + nb_out; ++pos) formats &= build->supportsFormatCombination(pos, io.data(), nb_in, nb_out);
  CHECK(formats, "%s: supportsFormatCombination refuses the linear types of getOutputDataTypes", node.c_str());
  io[0].desc.format = TensorFormat::kCHW32;
  CHECK(!build->supportsFormatCombination(0, io.data(), nb_in, nb_out), "%s: accepts a vectorised layout", node.c_str());
  io[0].desc.format = TensorFormat::kLINEAR;

  const int32_t configured = build->configurePlugin(io.data(), nb_in, io.data() + nb_in, nb_out);
  CHECK(configured == 0, "%s: configurePlugin failed: %s", node.c_str(), since().c_str());
  if (configured != 0) return finish();
  r.workspace = build->getWorkspaceSize(io.data(), nb_in, io.data() + nb_in, nb_out);
  if (want.workspace) CHECK(r.workspace > 0, "%s: getWorkspaceSize is 0", node.c_str());
  r.built = true;

  // the builder times the build-phase plugin: an enqueue on it must give the same outputs
  std::vector<std::unique_ptr<DevBuf>> build_outs;
  r.status_build = enqueue_once(node.c_str(), plugin.get(), ins, out_types, r.out_shapes, r.workspace, build_outs);

  // the engine: serialised fields -> runtime plugin -> execution context clone
  const PluginFieldCollection* serial = runtime->getFieldsToSerialize();
  CHECK(serial != nullptr, "%s: getFieldsToSerialize returned null", node.c_str());
  PluginPtr deserialised(creator->createPlugin(node.c_str(), serial, TensorRTPhase::kRUNTIME));
  CHECK(deserialised != nullptr, "%s: createPlugin(kRUNTIME) from the serialised fields failed: %s", node.c_str(),
        since().c_str());
  if (!deserialised) return finish();
  auto* drt = static_cast<IPluginV3OneRuntime*>(deserialised->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  PluginPtr context(drt->attachToContext(nullptr));
  CHECK(context != nullptr, "%s: attachToContext failed", node.c_str());
  if (!context) return finish();
  r.status = enqueue_once(node.c_str(), context.get(), ins, out_types, r.out_shapes, r.workspace, r.outs);

  CHECK(r.status == r.status_build, "%s: enqueue returned %d at run time, %d on the build-phase plugin", node.c_str(),
        r.status, r.status_build);
  if (r.status == 0 && r.status_build == 0) {
    bool same = true;
    for (size_t o = 0; o < r.outs.size(); ++o)
      same &= r.outs[o]->bytes() == build_outs[o]->bytes() &&
              std::memcmp(r.outs[o]->as<char>(), build_outs[o]->as<char>(), r.outs[o]->bytes()) == 0;
    // rows past a size tensor's count are untouched garbage in both, and both start as the same garbage
    CHECK(same, "%s: the runtime plugin's outputs differ from the build-phase plugin's", node.c_str());
  }
  return finish();
}

// ---- sparse convolution ------------------------------------------------------------------------
using clean_deploy::Activation;
using clean_deploy::ConvGeometry;
using clean_deploy::Rulebook;
using clean_deploy::SerialExecutor;

struct ConvCase {
  const char* name;
  std::array<int64_t, 3> shape, k, s, p, d;
  bool subm;
  int64_t cin, cout;
  std::vector<int32_t> batches;
  double density;
  bool relu, bias, half;
  int32_t max_batch = 0;     // attribute max_batch (0: absent)
  int64_t cap_delta = 0;     // with `capped`: max_out_rows = the frame's output rows + cap_delta
  bool capped = false;
};

ConvGeometry geometry_of(const ConvCase& c) {
  ConvGeometry g;
  g.in_shape = c.shape, g.kernel = c.k, g.stride = c.s, g.padding = c.p, g.dilation = c.d, g.subm = c.subm;
  return g;
}

std::vector<int32_t> random_sites(const ConvCase& c, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int32_t> idx;
  for (int32_t b : c.batches)
    for (int32_t z = 0; z < c.shape[0]; ++z)
      for (int32_t y = 0; y < c.shape[1]; ++y)
        for (int32_t x = 0; x < c.shape[2]; ++x)
          if (u(rng) < c.density) idx.insert(idx.end(), {b, z, y, x});
  const int64_t n = static_cast<int64_t>(idx.size() / 4);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);  // inputs need not be sorted
  std::vector<int32_t> out(idx.size());
  for (int64_t i = 0; i < n; ++i) std::memcpy(&out[4 * i], &idx[4 * perm[i]], 16);
  return out;
}

// One frame: sites, features, weights and the CPU kernels' results.
struct ConvFrame {
  int64_t n = 0, K = 0;
  std::vector<int32_t> idx;
  std::vector<float> feats, feats_used, weight, bias;  // feats_used: half-rounded for float16 cases
  std::vector<uint16_t> feats_h;
  Rulebook rb;
  std::vector<float> ref;  // CPU sparse_conv_forward on feats_used
  std::unique_ptr<DevBuf> d_feats, d_idx, d_weight, d_bias;
};

ConvFrame make_frame(const ConvCase& c, uint32_t seed) {
  ConvFrame f;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  f.idx = random_sites(c, rng);
  f.n = static_cast<int64_t>(f.idx.size() / 4);
  const ConvGeometry g = geometry_of(c);
  f.K = g.kernel_volume();
  f.feats.resize(static_cast<size_t>(f.n * c.cin));
  f.weight.resize(static_cast<size_t>(c.cout * f.K * c.cin));
  f.bias.resize(static_cast<size_t>(c.cout));
  for (auto& v : f.feats) v = u(rng);
  for (auto& v : f.weight) v = u(rng) * 0.2f;
  for (auto& v : f.bias) v = u(rng);
  f.feats_used = f.feats;
  if (c.half) {
    f.feats_h.resize(f.feats.size());
    for (size_t i = 0; i < f.feats.size(); ++i) f.feats_h[i] = to_half(f.feats[i]), f.feats_used[i] = from_half(f.feats_h[i]);
  }
  SerialExecutor serial;
  f.rb = clean_deploy::build_rulebook(f.idx.data(), f.n, g, serial);
  f.ref.resize(static_cast<size_t>(f.rb.num_out * c.cout));
  clean_deploy::sparse_conv_forward(f.feats_used.data(), c.cin, f.weight.data(), c.cout, c.bias ? f.bias.data() : nullptr,
                                    f.rb, c.relu ? Activation::kReLU : Activation::kNone, f.ref.data(), serial);
  auto upload = [](const void* p, size_t bytes) {
    auto b = std::make_unique<DevBuf>(bytes);
    if (bytes) std::memcpy(b->as<char>(), p, bytes);
    return b;
  };
  f.d_feats = c.half ? upload(f.feats_h.data(), f.feats_h.size() * 2) : upload(f.feats.data(), f.feats.size() * 4);
  f.d_idx = upload(f.idx.data(), f.idx.size() * 4);
  f.d_weight = upload(f.weight.data(), f.weight.size() * 4);
  f.d_bias = upload(f.bias.data(), f.bias.size() * 4);
  return f;
}

// Geometry attributes as plugins/prepare_onnx.py writes them (exported attributes + caps).
Attrs geometry_attrs(const ConvCase& c, int64_t max_out_rows, int64_t opt_rows) {
  Attrs a;
  a["kernel_size"] = ints({c.k[0], c.k[1], c.k[2]});
  a["stride"] = ints({c.s[0], c.s[1], c.s[2]});
  a["padding"] = ints({c.p[0], c.p[1], c.p[2]});
  a["dilation"] = ints({c.d[0], c.d[1], c.d[2]});
  a["subm"] = ints({c.subm ? 1 : 0});
  a["spatial_shape"] = ints({c.shape[0], c.shape[1], c.shape[2]});
  if (c.max_batch) a["max_batch"] = ints({c.max_batch});
  if (max_out_rows) {
    a["max_out_rows"] = ints({max_out_rows});
    a["opt_rows"] = ints({opt_rows});
  }
  a["plugin_namespace"] = str("clean_deploy");
  a["plugin_version"] = str("1");
  return a;
}

// The input-independent cap on a regular conv's rows: min(max_batch * output grid, max_out_rows).
int64_t row_cap(const ConvCase& c, int64_t max_out_rows) {
  int64_t grid = 1;
  for (int a = 0; a < 3; ++a) grid *= (c.shape[a] + 2 * c.p[a] - c.d[a] * (c.k[a] - 1) - 1) / c.s[a] + 1;
  int64_t cap = INT64_MAX;
  if (c.max_batch) cap = c.max_batch * grid;
  if (max_out_rows) cap = std::min(cap, max_out_rows);
  return cap;
}

// The output rows a regular conv declares for n inputs (the size tensor's upper bound):
// min(n * fan-out, max_batch * output grid, max_out_rows); n for a submanifold conv.
int64_t expected_upper(const ConvCase& c, int64_t n, int64_t max_out_rows) {
  if (c.subm) return n;
  int64_t fan = 1;
  for (int a = 0; a < 3; ++a) fan *= std::min<int64_t>(c.k[a], (c.k[a] - 1) * c.d[a] / c.s[a] + 1);
  return std::min(n * fan, row_cap(c, max_out_rows));
}

// The size tensor's opt: opt_rows (else 16384) within the cap; a build-time constant.
int64_t expected_opt(const ConvCase& c, int64_t max_out_rows, int64_t opt_rows) {
  return std::min<int64_t>(opt_rows > 0 ? opt_rows : 16384, row_cap(c, max_out_rows));
}

// Features of `rows` output rows against the CPU result: max relative difference (|d| / max(1, |ref|)).
double feature_diff(const ConvCase& c, const ConvFrame& f, const DevBuf& out, int64_t rows, double* bitwise) {
  double worst = 0;
  int64_t same = 0;
  const int64_t count = std::min<int64_t>(rows, f.rb.num_out) * c.cout;
  for (int64_t i = 0; i < count; ++i) {
    const float got = c.half ? from_half(out.as<uint16_t>()[i]) : out.as<float>()[i];
    const float want = c.half ? from_half(to_half(f.ref[i])) : f.ref[i];
    worst = std::max(worst, std::fabs(static_cast<double>(got) - want) / std::max(1.0, std::fabs(static_cast<double>(want))));
    same += std::memcmp(&got, &want, 4) == 0;
    if (std::isnan(got) != std::isnan(want)) worst = INFINITY;
  }
  if (bitwise) *bitwise = count ? 100.0 * same / count : 100.0;
  return worst;
}

double tolerance(const ConvCase& c) { return c.half ? 1e-3 : 1e-5; }

bool logged(const Outcome& r, const std::string& a, const std::string& b) {
  return r.log.find(a) != std::string::npos && r.log.find(b) != std::string::npos;
}

// max_out_rows of a capped case: the frame's real output rows + cap_delta
int64_t cap_of(const ConvCase& c, const ConvFrame& f) { return c.capped ? f.rb.num_out + c.cap_delta : 0; }

// clean_deploy::SparseConvolution as one fused plugin (plugins/prepare_onnx.py --sparse fused).
void test_fused(const ConvCase& c, uint32_t seed) {
  const ConvFrame f = make_frame(c, seed);
  const int64_t cap = cap_of(c, f), opt = cap ? std::max<int64_t>(1, cap / 2) : 0;
  const std::string node = std::string("fused ") + c.name;
  Attrs attrs = geometry_attrs(c, cap, opt);
  attrs["activation"] = str(c.relu ? "relu" : "none");
  const DataType ft = c.half ? DataType::kHALF : DataType::kFLOAT;
  std::vector<Input> ins = {{ft, {f.n, c.cin}, {true, false}, f.d_feats.get()},
                            {DataType::kINT32, {f.n, 4}, {true, false}, f.d_idx.get()},
                            {DataType::kFLOAT, {c.cout, c.k[0], c.k[1], c.k[2], c.cin}, std::vector<bool>(5, false), f.d_weight.get()}};
  if (c.bias) ins.push_back({DataType::kFLOAT, {c.cout}, {false}, f.d_bias.get()});
  Expect want;
  want.out_types = {ft, DataType::kINT32};
  if (!c.subm) want.out_types.push_back(DataType::kINT32), want.size_tensors = 1;
  want.workspace = f.n > 0 || !c.subm;
  const Outcome r = run_node("SparseConvolution", node, attrs, ins, want);
  if (!r.built) return;
  const int64_t upper = expected_upper(c, f.n, cap);
  CHECK(r.out_shapes[0] == Shape({upper, c.cout}) && r.out_shapes[1] == Shape({upper, 4}),
        "[%s] declared outputs %s %s, expected %lld rows", node.c_str(), shape_str(r.out_shapes[0]).c_str(),
        shape_str(r.out_shapes[1]).c_str(), static_cast<long long>(upper));
  if (!c.subm && !r.declared.empty())
    CHECK(r.declared[0].output == 2 && r.declared[0].upper == upper && r.declared[0].opt == expected_opt(c, cap, opt),
          "[%s] size tensor output %d upper %lld opt %lld, expected output 2 upper %lld opt %lld", node.c_str(),
          r.declared[0].output, static_cast<long long>(r.declared[0].upper), static_cast<long long>(r.declared[0].opt),
          static_cast<long long>(upper), static_cast<long long>(expected_opt(c, cap, opt)));
  if (c.capped && c.cap_delta < 0) {
    // the frame produces more rows than max_out_rows: enqueue fails loudly, naming the node
    CHECK(r.status != 0, "[%s] %lld output sites > max_out_rows=%lld, yet enqueue returned 0 (silent truncation)",
          node.c_str(), static_cast<long long>(f.rb.num_out), static_cast<long long>(cap));
    CHECK(logged(r, "SparseConvolution '" + node + "'", "max_out_rows=" + std::to_string(cap)),
          "[%s] the failure's message must name the plugin, the layer and the cap; got: %s", node.c_str(), r.log.c_str());
    if (r.status != 0)
      std::printf("  %-44s n=%-5lld m=%-5lld > max_out_rows=%lld: enqueue failed as required\n", node.c_str(),
                  static_cast<long long>(f.n), static_cast<long long>(f.rb.num_out), static_cast<long long>(cap));
    return;
  }
  CHECK(r.status == 0, "[%s] enqueue returned %d: %s", node.c_str(), r.status, r.log.c_str());
  if (r.status != 0) return;
  const int64_t m = c.subm ? f.n : r.outs[2]->as<int32_t>()[0];
  CHECK(m == f.rb.num_out, "[%s] num_out %lld, CPU %lld", node.c_str(), static_cast<long long>(m),
        static_cast<long long>(f.rb.num_out));
  if (m != f.rb.num_out) return;
  const int32_t* oi = r.outs[1]->as<int32_t>();
  CHECK(std::equal(oi, oi + 4 * m, c.subm ? f.idx.begin() : f.rb.out_indices.begin()),
        "[%s] out_indices differ from the %s", node.c_str(),
        c.subm ? "input indices (submanifold: same rows, same order)" : "CPU kernel's sites sorted by (b, z, y, x)");
  double bitwise = 100;
  const double diff = m ? feature_diff(c, f, *r.outs[0], m, &bitwise) : 0;
  CHECK(diff <= tolerance(c), "[%s] features differ from the CPU kernel by %g (relative)", node.c_str(), diff);
  std::printf("  %-44s n=%-5lld m=%-5lld rows %-5lld max rel diff %.1e (%.0f%% bitwise)\n", node.c_str(),
              static_cast<long long>(f.n), static_cast<long long>(m), static_cast<long long>(upper), diff, bitwise);
}

// The split form (plugins/prepare_onnx.py --sparse split): SparseConvIndexPairs + SparseConvGemm,
// the GEMM reading the index-pair node's neighbour table in place, with its runtime row count.
void test_split(const ConvCase& c, uint32_t seed) {
  const ConvFrame f = make_frame(c, seed);
  const int64_t cap = cap_of(c, f), opt = cap ? std::max<int64_t>(1, cap / 2) : 0;
  const std::string node = std::string("split ") + c.name;
  const std::string pairs_node = node + ".index_pairs", gemm_node = node + ".gemm";
  std::vector<Input> pins = {{DataType::kINT32, {f.n, 4}, {true, false}, f.d_idx.get()}};
  Expect pw;
  pw.out_types = c.subm ? std::vector<DataType>{DataType::kINT32}
                        : std::vector<DataType>{DataType::kINT32, DataType::kINT32, DataType::kINT32};
  pw.size_tensors = c.subm ? 0 : 1;
  pw.workspace = f.n > 0 || !c.subm;
  const Outcome p = run_node("SparseConvIndexPairs", pairs_node, geometry_attrs(c, cap, opt), pins, pw);
  if (!p.built) return;
  const int64_t upper = expected_upper(c, f.n, cap);
  if (!c.subm && !p.declared.empty())
    CHECK(p.declared[0].output == 2 && p.declared[0].upper == upper && p.declared[0].opt == expected_opt(c, cap, opt),
          "[%s] size tensor output %d upper %lld opt %lld", pairs_node.c_str(), p.declared[0].output,
          static_cast<long long>(p.declared[0].upper), static_cast<long long>(p.declared[0].opt));
  const Shape nbr_shape = p.out_shapes[c.subm ? 0 : 1];
  CHECK(nbr_shape == Shape({upper, f.K}), "[%s] neighbours declared %s, expected [%lld, %lld]", pairs_node.c_str(),
        shape_str(nbr_shape).c_str(), static_cast<long long>(upper), static_cast<long long>(f.K));
  if (c.capped && c.cap_delta < 0) {
    CHECK(p.status != 0, "[%s] %lld output sites > max_out_rows=%lld, yet enqueue returned 0 (silent truncation)",
          pairs_node.c_str(), static_cast<long long>(f.rb.num_out), static_cast<long long>(cap));
    CHECK(logged(p, "SparseConvIndexPairs '" + pairs_node + "'", "max_out_rows=" + std::to_string(cap)),
          "[%s] the failure's message must name the plugin, the layer and the cap; got: %s", pairs_node.c_str(),
          p.log.c_str());
    if (p.status != 0)
      std::printf("  %-44s n=%-5lld m=%-5lld > max_out_rows=%lld: enqueue failed as required\n", pairs_node.c_str(),
                  static_cast<long long>(f.n), static_cast<long long>(f.rb.num_out), static_cast<long long>(cap));
    return;
  }
  CHECK(p.status == 0, "[%s] enqueue returned %d: %s", pairs_node.c_str(), p.status, p.log.c_str());
  if (p.status != 0) return;
  const int64_t m = c.subm ? f.n : p.outs[2]->as<int32_t>()[0];
  CHECK(m == f.rb.num_out, "[%s] num_out %lld, CPU %lld", pairs_node.c_str(), static_cast<long long>(m),
        static_cast<long long>(f.rb.num_out));
  if (m != f.rb.num_out) return;
  if (!c.subm) {
    const int32_t* oi = p.outs[0]->as<int32_t>();
    CHECK(std::equal(oi, oi + 4 * m, f.rb.out_indices.begin()),
          "[%s] out_indices differ from the CPU kernel's sites sorted by (b, z, y, x)", pairs_node.c_str());
  }
  const DevBuf& nbr = *p.outs[c.subm ? 0 : 1];
  const int32_t* nb = nbr.as<int32_t>();
  CHECK(std::equal(nb, nb + m * f.K, f.rb.neighbors.begin()), "[%s] neighbour table differs from the CPU rulebook",
        pairs_node.c_str());

  // the GEMM node: its neighbours input has the size tensor's value as rows
  Attrs gattrs;
  gattrs["activation"] = str(c.relu ? "relu" : "none");
  gattrs["plugin_namespace"] = str("clean_deploy");
  gattrs["plugin_version"] = str("1");
  const DataType ft = c.half ? DataType::kHALF : DataType::kFLOAT;
  std::vector<Input> gins = {{ft, {f.n, c.cin}, {true, false}, f.d_feats.get()},
                             {DataType::kINT32, {m, f.K}, {true, false}, &nbr},
                             {DataType::kFLOAT, {c.cout, c.k[0], c.k[1], c.k[2], c.cin}, std::vector<bool>(5, false), f.d_weight.get()}};
  if (c.bias) gins.push_back({DataType::kFLOAT, {c.cout}, {false}, f.d_bias.get()});
  Expect gw;
  gw.out_types = {ft};
  gw.workspace = false;
  const Outcome g = run_node("SparseConvGemm", gemm_node, gattrs, gins, gw);
  if (!g.built) return;
  CHECK(g.out_shapes[0] == Shape({m, c.cout}), "[%s] declared %s", gemm_node.c_str(), shape_str(g.out_shapes[0]).c_str());
  CHECK(g.status == 0, "[%s] enqueue returned %d: %s", gemm_node.c_str(), g.status, g.log.c_str());
  if (g.status != 0) return;
  double bitwise = 100;
  const double diff = m ? feature_diff(c, f, *g.outs[0], m, &bitwise) : 0;
  CHECK(diff <= tolerance(c), "[%s] features differ from the CPU kernel by %g (relative)", gemm_node.c_str(), diff);
  std::printf("  %-44s n=%-5lld m=%-5lld rows %-5lld max rel diff %.1e (%.0f%% bitwise)\n", node.c_str(),
              static_cast<long long>(f.n), static_cast<long long>(m), static_cast<long long>(upper), diff, bitwise);
}

// ---- invalid sites under CLEAN_DEPLOY_TRT_SYNC_CHECK=1 ------------------------------------------------
// Duplicate sites and sites outside spatial_shape / max_batch are skipped by the kernels, which set
// flags; the plugins do not fail on them (no per-layer stream sync in production) but, with
// CLEAN_DEPLOY_TRT_SYNC_CHECK=1, read the flags back after enqueue and log them, naming the layer.
// Runs in a child process (the variable is read once per process).
void test_sync_check_reports() {
  struct Bad {
    const char* name;
    const char* plugin;
    bool subm;
    std::vector<int32_t> idx;  // (b, z, y, x) rows on a 4 x 5 x 6 grid, max_batch 2
    const char* message;       // "" for a valid frame: nothing may be logged
  };
  const std::vector<Bad> cases = {
      {"regular, duplicate site", "SparseConvolution", false, {0, 1, 1, 1, 0, 2, 2, 2, 0, 1, 1, 1},
       "two indices rows are the same site"},
      {"subm, site outside spatial_shape", "SparseConvolution", true, {0, 1, 1, 1, 0, 4, 0, 0},
       "outside spatial_shape"},
      {"regular, batch >= max_batch", "SparseConvIndexPairs", false, {0, 1, 1, 1, 2, 1, 1, 1}, ">= max_batch"},
      {"subm, duplicate site", "SparseConvIndexPairs", true, {1, 3, 4, 5, 1, 3, 4, 5}, "two indices rows are the same site"},
      {"regular, valid frame", "SparseConvolution", false, {0, 1, 1, 1, 1, 3, 4, 5}, ""},
  };
  const int64_t cin = 4, cout = 4;
  for (const Bad& b : cases) {
    ConvCase c{b.name, {4, 5, 6}, {3, 3, 3}, {b.subm ? 1 : 2, b.subm ? 1 : 2, b.subm ? 1 : 2}, {1, 1, 1}, {1, 1, 1},
               b.subm, cin, cout, {0}, 0.0, true, false, false, 2};
    const int64_t n = static_cast<int64_t>(b.idx.size() / 4), K = 27;
    DevBuf d_idx(b.idx.size() * 4), d_feat(static_cast<size_t>(n * cin) * 4), d_w(static_cast<size_t>(cout * K * cin) * 4);
    std::memcpy(d_idx.as<char>(), b.idx.data(), d_idx.bytes());
    for (int64_t i = 0; i < n * cin; ++i) d_feat.as<float>()[i] = 0.25f * static_cast<float>(i % 7);
    for (int64_t i = 0; i < cout * K * cin; ++i) d_w.as<float>()[i] = 0.01f * static_cast<float>(i % 13);
    const bool fused = std::strcmp(b.plugin, "SparseConvolution") == 0;
    const std::string node = std::string("sync check ") + b.name;
    Attrs attrs = geometry_attrs(c, 0, 0);
    std::vector<Input> ins;
    Expect want;
    if (fused) {
      attrs["activation"] = str("relu");
      ins = {{DataType::kFLOAT, {n, cin}, {true, false}, &d_feat},
             {DataType::kINT32, {n, 4}, {true, false}, &d_idx},
             {DataType::kFLOAT, {cout, 3, 3, 3, cin}, std::vector<bool>(5, false), &d_w}};
      want.out_types = {DataType::kFLOAT, DataType::kINT32};
    } else {
      ins = {{DataType::kINT32, {n, 4}, {true, false}, &d_idx}};
      want.out_types = {DataType::kINT32};
    }
    if (!c.subm) want.out_types.resize(3, DataType::kINT32), want.size_tensors = 1;  // + out_indices, num_out
    const Outcome r = run_node(b.plugin, node, attrs, ins, want);
    if (!r.built) continue;
    CHECK(r.status == 0, "[%s] enqueue returned %d (data errors are reported, not failed): %s", node.c_str(), r.status,
          r.log.c_str());
    if (*b.message) {
      // once from the build-phase plugin's enqueue, once from the runtime plugin's
      CHECK(logged(r, std::string(b.plugin) + " '" + node + "'", b.message),
            "[%s] CLEAN_DEPLOY_TRT_SYNC_CHECK=1 did not report '%s' for the layer; logged: %s", node.c_str(), b.message,
            r.log.c_str());
      std::printf("  %-44s reported: %s", node.c_str(), r.log.substr(0, r.log.find('\n') + 1).c_str());
    } else {
      CHECK(r.log.empty(), "[%s] a valid frame logged: %s", node.c_str(), r.log.c_str());
      std::printf("  %-44s nothing reported\n", node.c_str());
    }
  }
}

// ---- IoU-aware redundancy elimination ----------------------------------------------------------------
enum Slot { kCls = 0, kBox = 1, kDir = 2, kIou = 3, kAnchors = 4 };

struct ReCase {
  const char* name;
  bool anchor, iou, dir, sincos;
  float cross;
  int32_t max_output;
  bool prepared;  // plugins/prepare_onnx.py dropped the empty slots (present_inputs); else all 5 inputs
};

void test_redundancy(const ReCase& rc, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f), logit(-6.f, 3.f);
  const int C = 3, B = 2, bins = 2, top_k = 200, pre_max = 300;
  const int64_t H = 12, W = 10;
  const float pc[6] = {0.f, -40.f, -3.f, 70.4f, 40.f, 1.f}, cell[2] = {0.8f, 0.8f};
  const std::vector<double> beta{0.5, 0.3, 0.0}, min_iou{0.1, 0.0, 0.2}, nms{0.1, 0.3, 0.5};
  const int code = rc.sincos ? 8 : 7;

  std::vector<float> cls, box, dir, iou, anchors;
  int64_t K = 0;
  if (rc.anchor) {
    K = H * W * 2;  // two rotations per cell of a 1.6 m grid, car-sized anchors: neighbours overlap
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int r = 0; r < 2; ++r)
          anchors.insert(anchors.end(), {x * 1.6f, y * 1.6f - 20.f, -1.f, 3.9f, 1.6f, 1.56f, r * 1.5708f});
    for (int64_t i = 0; i < B * K * C; ++i) cls.push_back(logit(rng));
    for (int64_t i = 0; i < B * K * code; ++i) box.push_back(u(rng) * 0.3f);
    for (int64_t i = 0; i < B * K * bins; ++i) dir.push_back(u(rng));
    for (int64_t i = 0; i < B * K; ++i) iou.push_back(u(rng) * 3.f);
  } else {
    for (int64_t i = 0; i < B * C * H * W; ++i) cls.push_back(logit(rng));
    for (int64_t i = 0; i < B * 8 * H * W; ++i) box.push_back(u(rng) * 0.8f + 0.4f);
    for (int64_t i = 0; i < B * H * W; ++i) iou.push_back(u(rng) * 3.f);
  }
  auto upload = [](const std::vector<float>& v) {
    auto b = std::make_unique<DevBuf>(v.size() * 4);
    if (!v.empty()) std::memcpy(b->as<char>(), v.data(), v.size() * 4);
    return b;
  };
  const auto d_cls = upload(cls), d_box = upload(box), d_dir = upload(dir), d_iou = upload(iou), d_anchors = upload(anchors);

  // the node as exported (docs/custom_ops.md), then as plugins/prepare_onnx.py leaves it
  Attrs a;
  a["head_type"] = str(rc.anchor ? "anchor" : "center");
  a["num_classes"] = ints({C});
  a["code_sincos"] = ints({rc.sincos ? 1 : 0});
  a["use_dir"] = ints({rc.dir ? 1 : 0});
  a["num_dir_bins"] = ints({bins});
  a["dir_offset"] = floats({0.78539});
  a["dir_limit_offset"] = floats({0.0});
  a["top_k"] = ints({top_k});
  a["pc_range"] = floats({pc[0], pc[1], pc[2], pc[3], pc[4], pc[5]});
  a["cell_size"] = floats({cell[0], cell[1]});
  a["beta"] = floats(beta);
  a["min_iou"] = floats(min_iou);
  a["nms_thresh"] = floats(nms);
  a["score_thresh"] = floats({0.1});
  a["cross_class_thresh"] = floats({rc.cross});
  a["pre_max"] = ints({pre_max});
  a["max_output"] = ints({rc.max_output});
  a["plugin_namespace"] = str("clean_deploy");
  a["plugin_version"] = str("1");

  // slots: (anchor) cls, box, dir, iou, anchors; (center) hm, reg, -, iou, -
  std::vector<bool> present(5, false);
  present[kCls] = present[kBox] = true;
  present[kDir] = rc.anchor && rc.dir;
  present[kIou] = rc.iou;
  present[kAnchors] = rc.anchor;
  std::vector<Input> ins;
  const Shape shapes[5] = {rc.anchor ? Shape{B, K, C} : Shape{B, C, H, W}, rc.anchor ? Shape{B, K, code} : Shape{B, 8, H, W},
                           Shape{B, K, bins}, rc.anchor ? Shape{B, K} : Shape{B, H, W}, Shape{K, 7}};
  const DevBuf* bufs[5] = {d_cls.get(), d_box.get(), d_dir.get(), d_iou.get(), d_anchors.get()};
  for (int s = 0; s < 5; ++s) {
    if (!present[s] && rc.prepared) continue;
    std::vector<bool> dyn(shapes[s].size(), false);
    if (s != kAnchors) dyn[0] = true;  // the batch; anchors are an initializer
    ins.push_back({DataType::kFLOAT, shapes[s], dyn, bufs[s]});
  }
  if (rc.prepared) {
    std::vector<int64_t> pr;
    for (bool b : present) pr.push_back(b ? 1 : 0);
    a["present_inputs"] = ints(pr);
  }

  const std::string node = std::string("redundancy ") + rc.name;
  Expect want;
  want.out_types = {DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32, DataType::kINT32};
  const Outcome r = run_node("IoUAwareRedundancyElimination", node, a, ins, want);
  if (!r.built) return;
  const int64_t M = rc.max_output;
  CHECK(r.out_shapes == std::vector<Shape>({{B, M, 7}, {B, M}, {B, M}, {B}}), "[%s] declared output shapes",
        node.c_str());
  CHECK(r.status == 0, "[%s] enqueue returned %d: %s", node.c_str(), r.status, r.log.c_str());
  if (r.status != 0) return;

  clean_deploy::DecodeParams dp;
  dp.head = rc.anchor ? clean_deploy::HeadType::kAnchor : clean_deploy::HeadType::kCenter;
  dp.num_classes = C;
  dp.code_sincos = rc.sincos;
  dp.use_dir = rc.dir;
  dp.num_dir_bins = bins;
  dp.dir_offset = 0.78539f;
  dp.dir_limit_offset = 0.0f;
  dp.top_k = top_k;
  std::copy(pc, pc + 6, dp.pc_range);
  std::copy(cell, cell + 2, dp.cell_size);
  clean_deploy::EliminationParams ep;
  for (int c = 0; c < C; ++c)
    ep.beta.push_back(static_cast<float>(beta[c])), ep.min_iou.push_back(static_cast<float>(min_iou[c])),
        ep.nms_thresh.push_back(static_cast<float>(nms[c]));
  ep.score_thresh = 0.1f;
  ep.cross_class_thresh = rc.cross;
  ep.pre_max = pre_max;
  ep.max_output = rc.max_output;

  const float* g_boxes = r.outs[0]->as<float>();
  const float* g_scores = r.outs[1]->as<float>();
  const int32_t* g_labels = r.outs[2]->as<int32_t>();
  const int32_t* g_valid = r.outs[3]->as<int32_t>();
  for (int f = 0; f < B; ++f) {
    clean_deploy::Candidates cand =
        rc.anchor ? clean_deploy::decode_anchor_frame(cls.data() + f * K * C, box.data() + f * K * code,
                                                      rc.dir ? dir.data() + f * K * bins : nullptr,
                                                      rc.iou ? iou.data() + f * K : nullptr, anchors.data(), K, code, dp,
                                                      ep.score_thresh)
                  : clean_deploy::decode_center_frame(cls.data() + f * C * H * W, box.data() + f * 8 * H * W,
                                                      rc.iou ? iou.data() + f * H * W : nullptr, H, W, dp);
    std::vector<float> boxes(static_cast<size_t>(M * 7), 0.f), scores(static_cast<size_t>(M), 0.f);
    std::vector<int32_t> labels(static_cast<size_t>(M), -1);
    const int64_t count = clean_deploy::eliminate(cand, ep, boxes.data(), scores.data(), labels.data());
    CHECK(g_valid[f] == count, "[%s] frame %d: valid_count %d, CPU %lld", node.c_str(), f, g_valid[f],
          static_cast<long long>(count));
    double box_diff = 0, score_diff = 0;
    int64_t label_diff = 0;
    for (int64_t i = 0; i < M; ++i) {  // the padding rows too: zeros and label -1
      label_diff += g_labels[f * M + i] != labels[i];
      score_diff = std::max(score_diff, static_cast<double>(std::fabs(g_scores[f * M + i] - scores[i])));
      for (int j = 0; j < 7; ++j)
        box_diff = std::max(box_diff, std::fabs(static_cast<double>(g_boxes[(f * M + i) * 7 + j]) - boxes[i * 7 + j]) /
                                          std::max(1.0, std::fabs(static_cast<double>(boxes[i * 7 + j]))));
    }
    CHECK(label_diff == 0 && box_diff <= 1e-6 && score_diff <= 1e-6,
          "[%s] frame %d: outputs differ from the CPU op (labels %lld, box rel diff %g, score diff %g)", node.c_str(), f,
          static_cast<long long>(label_diff), box_diff, score_diff);
    std::printf("  %-44s frame %d: %d kept of %lld candidates, box rel diff %.1e, score diff %.1e\n", node.c_str(), f,
                g_valid[f], static_cast<long long>(cand.size()), box_diff, score_diff);
  }
}

// A kernel looping forever on corrupted data (e.g. a hash probe over an overwritten table) must fail
// the run, not stall CI.
constexpr unsigned kWatchdogSeconds = 300;
void on_watchdog(int) {
  static const char msg[] = "plugin_enqueue_emu: watchdog: no result after 300 s (a kernel loops?)\n";
  ssize_t ignored = write(2, msg, sizeof(msg) - 1);
  (void)ignored;
  _exit(3);
}

// Buffers end at inaccessible pages: an access past one lands here.
void on_fault(int) {
  static const char msg[] = "plugin_enqueue_emu: memory fault: a plugin or kernel accessed memory past a buffer "
                            "(output, input or workspace; the last case printed above ran fine)\n";
  ssize_t ignored = write(2, msg, sizeof(msg) - 1);
  (void)ignored;
  _exit(4);
}

// test_sync_check_reports() in a child process with CLEAN_DEPLOY_TRT_SYNC_CHECK=1 (the plugins read the
// variable once); its check counts are added to this process's.
void run_sync_check_child() {
  int fds[2];
  if (pipe(fds) != 0) {
    CHECK(false, "pipe failed");
    return;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    alarm(kWatchdogSeconds);
    setenv("CLEAN_DEPLOY_TRT_SYNC_CHECK", "1", 1);
    g_checks = g_failures = 0;
    std::printf("invalid sites with CLEAN_DEPLOY_TRT_SYNC_CHECK=1 (reported, not failed):\n");
    test_sync_check_reports();
    std::fflush(stdout);
    std::fflush(stderr);
    const int counts[2] = {g_checks, g_failures};
    const bool sent = write(fds[1], counts, sizeof(counts)) == static_cast<ssize_t>(sizeof(counts));
    _exit(sent ? 0 : 1);
  }
  close(fds[1]);
  int counts[2] = {0, 0};
  const ssize_t got = pid > 0 ? read(fds[0], counts, sizeof(counts)) : -1;
  close(fds[0]);
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  CHECK(pid > 0 && got == static_cast<ssize_t>(sizeof(counts)) && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the CLEAN_DEPLOY_TRT_SYNC_CHECK=1 child process failed (status %d)", status);
  g_checks += counts[0];
  g_failures += counts[1];
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress stays visible if a case crashes
  std::signal(SIGALRM, on_watchdog);
  std::signal(SIGSEGV, on_fault);
  std::signal(SIGBUS, on_fault);
  alarm(kWatchdogSeconds);
  Finder finder(&g_logger);
  setLoggerFinder(&finder);
  // first, before this process's first enqueue: the child must read the variable itself
  run_sync_check_child();

  // Small grids: every kernel launch runs as host loops, GEMM blocks as 256 std::threads.
  using A = std::array<int64_t, 3>;
  const A one{1, 1, 1}, zero{0, 0, 0}, k3{3, 3, 3}, s2{2, 2, 2};
  // name, shape, k, s, p, d, subm, cin, cout, batches, density, relu, bias, half, max_batch, cap_delta, capped
  const std::vector<ConvCase> fused = {
      {"subm 3^3, bias, relu", {6, 14, 12}, k3, one, one, one, true, 8, 16, {0}, 0.2, true, true, false},
      {"subm 3^3 dilated, no bias, no act", {7, 12, 11}, k3, one, zero, {2, 1, 2}, true, 5, 24, {0, 2}, 0.15, false, false, false},
      {"regular 3^3 s2 p1, bias, relu, 2 batches", {7, 16, 14}, k3, s2, one, one, false, 8, 16, {0, 1}, 0.12, true, true, false, 2},
      {"regular (3,1,1) s(2,1,1), no bias, no act", {7, 9, 8}, {3, 1, 1}, {2, 1, 1}, zero, one, false, 12, 40, {0}, 0.25, false, false, false},
      {"regular 2^3 s2, float16, relu", {6, 12, 10}, {2, 2, 2}, s2, zero, one, false, 8, 16, {0}, 0.2, true, true, true},
      {"subm 3^3, float16, no bias", {5, 10, 10}, k3, one, one, one, true, 16, 8, {0}, 0.25, false, false, true},
      {"regular s2, max_out_rows = rows (binds)", {6, 14, 12}, k3, s2, one, one, false, 4, 8, {0}, 0.15, true, true, false, 1, 0, true},
      {"regular s2, max_out_rows = rows - 1", {6, 14, 12}, k3, s2, one, one, false, 4, 8, {0}, 0.15, true, true, false, 1, -1, true},
      {"regular s2, empty frame", {6, 14, 12}, k3, s2, one, one, false, 4, 8, {0}, 0.0, true, true, false, 1},
      {"subm, empty frame", {6, 14, 12}, k3, one, one, one, true, 4, 8, {0}, 0.0, true, true, false},
  };
  const std::vector<ConvCase> split = {
      {"subm 3^3, bias, relu", {6, 14, 12}, k3, one, one, one, true, 8, 16, {0, 1}, 0.2, true, true, false},
      {"regular 3^3 s2 p1, no bias, no act", {7, 16, 14}, k3, s2, one, one, false, 6, 20, {0}, 0.15, false, false, false, 1},
      {"regular s2, float16, max_out_rows = rows", {6, 12, 12}, k3, s2, one, one, false, 8, 8, {0}, 0.15, true, true, true, 1, 0, true},
      {"regular s2, max_out_rows = rows - 1", {6, 12, 12}, k3, s2, one, one, false, 4, 8, {0}, 0.15, true, true, false, 1, -1, true},
      {"regular s2, empty frame", {6, 14, 12}, k3, s2, one, one, false, 4, 8, {0}, 0.0, true, true, false, 1},
  };
  std::printf("SparseConvolution (fused plugin) vs the CPU kernel:\n");
  uint32_t seed = 11;
  for (const auto& c : fused) test_fused(c, seed++);
  std::printf("SparseConvIndexPairs + SparseConvGemm (split plugins) vs the CPU kernel:\n");
  for (const auto& c : split) test_split(c, seed++);

  std::printf("IoUAwareRedundancyElimination vs the CPU op:\n");
  // name, anchor, iou, dir, sincos, cross, max_output, prepared
  const std::vector<ReCase> re = {
      {"anchor, iou+dir, prepared", true, true, true, false, 0.6f, 100, true},
      {"anchor, iou+dir, all 5 inputs", true, true, true, false, 0.6f, 250, false},
      {"anchor, sincos, no dir/iou, max_output 20", true, false, false, true, 1.0f, 20, true},
      {"center, iou, prepared", false, true, false, false, 0.6f, 100, true},
      {"center, plain NMS, max_output 15", false, false, false, false, 1.0f, 15, true},
  };
  for (const auto& rc : re) test_redundancy(rc, seed++);

  std::printf("plugin_enqueue_emu: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
