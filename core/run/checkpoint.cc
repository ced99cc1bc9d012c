#include "core/run/checkpoint.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <dirent.h>
#include <torch/nn/module.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "core/run/files.h"
#include "kernels/base/byte_io.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// 4: cdl's own container; 3 and earlier were LibTorch archives with a hash trailer.
constexpr int64_t kFormat = 4;
constexpr char kMagic[8] = {'C', 'D', 'L', 'C', 'K', 'P', 'T', '4'};
constexpr size_t kTrailerBytes = 16;  // xxhash64 of everything before it, then the magic
constexpr size_t kMaxNameBytes = 1024;
constexpr int kMaxDims = 8;
constexpr int64_t kMetaFields = 15;

enum class ArrayType : uint8_t { kF32 = 0, kF64 = 1, kI64 = 2, kU8 = 3 };

size_t widthOf(ArrayType t) {
  switch (t) {
    case ArrayType::kF32:
      return 4;
    case ArrayType::kF64:
    case ArrayType::kI64:
      return 8;
    case ArrayType::kU8:
      return 1;
  }
  return 0;
}

const char* typeName(ArrayType t) {
  switch (t) {
    case ArrayType::kF32:
      return "float32";
    case ArrayType::kF64:
      return "float64";
    case ArrayType::kI64:
      return "int64";
    case ArrayType::kU8:
      return "uint8";
  }
  return "unknown";
}

ArrayType typeOf(const at::Tensor& t, const std::string& name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ArrayType::kF32;
    case at::kDouble:
      return ArrayType::kF64;
    case at::kLong:
      return ArrayType::kI64;
    case at::kByte:
      return ArrayType::kU8;
    default:
      CDL_THROW("tensor '", name, "' of type ", t.scalar_type(), " cannot go into a checkpoint");
  }
}

// One named array of a checkpoint, pointing into the file's bytes.
struct Array {
  ArrayType type = ArrayType::kU8;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t bytes = 0;
};

// Streams named arrays into a checkpoint file (Note [Checkpoints]), hashing them on the way.
class ArchiveWriter {
 public:
  explicit ArchiveWriter(const ByteSink& sink) : sink_(sink), hash_(XXH64_createState()) {
    CDL_CHECK(hash_ != nullptr, "out of memory");
    XXH64_reset(hash_, 0);
    emit(kMagic, sizeof(kMagic));
  }
  ~ArchiveWriter() { XXH64_freeState(hash_); }
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  void add(const std::string& name, ArrayType type, const std::vector<int64_t>& shape,
           const void* data, size_t bytes) {
    CDL_CHECK(!name.empty() && name.size() <= kMaxNameBytes, "a checkpoint entry name of ",
              name.size(), " bytes (must be 1..", kMaxNameBytes, ")");
    CDL_CHECK(shape.size() <= kMaxDims, "tensor '", name, "' has ", shape.size(),
              " dimensions, a checkpoint holds at most ", kMaxDims);
    ByteWriter w;
    w.put<uint16_t>(static_cast<uint16_t>(name.size()));
    w.putBytes(name.data(), name.size());
    w.put<uint8_t>(static_cast<uint8_t>(type));
    w.put<uint8_t>(static_cast<uint8_t>(shape.size()));
    for (int64_t d : shape) w.putVarint(static_cast<uint64_t>(d));
    emit(w.bytes().data(), w.bytes().size());
    emit(data, bytes);
  }
  // Whatever the tensor's device, the archive holds its host bytes (Note [Training device]).
  void add(const std::string& name, const at::Tensor& t) {
    const at::Tensor c = t.to(at::kCPU).contiguous();
    add(name, typeOf(c, name), c.sizes().vec(), c.data_ptr(), c.numel() * c.element_size());
  }
  template <typename T>
  void addVector(const std::string& name, ArrayType type, const std::vector<T>& v) {
    add(name, type, {static_cast<int64_t>(v.size())}, v.data(), v.size() * sizeof(T));
  }
  void addText(const std::string& name, const std::string& s) {
    add(name, ArrayType::kU8, {static_cast<int64_t>(s.size())}, s.data(), s.size());
  }
  // The trailer: the hash and the magic.
  void finish() {
    const uint64_t hash = XXH64_digest(hash_);
    sink_(&hash, sizeof(hash));
    sink_(kMagic, sizeof(kMagic));
  }

 private:
  void emit(const void* p, size_t n) {
    XXH64_update(hash_, p, n);
    sink_(p, n);
  }
  const ByteSink& sink_;
  XXH64_state_t* hash_;
};

// The whole of a checkpoint file once its trailer and hash are checked; errors say what is wrong.
std::string readVerified(const std::string& path) {
  std::string bytes = readWholeFile(path, "checkpoint");
  const char* end = bytes.data() + bytes.size();
  CDL_CHECK(bytes.size() >= sizeof(kMagic) + kTrailerBytes && std::memcmp(end - 8, kMagic, 7) == 0,
            "checkpoint ", path,
            " is truncated or not a cdl checkpoint (no content hash at its end)");
  CDL_CHECK(end[-1] == kMagic[7], "checkpoint ", path, " is of format ", end[-1],
            " (an older cdl's); this build reads format ", kFormat);
  const size_t body = bytes.size() - kTrailerBytes;
  const uint64_t stored = loadLE<uint64_t>(reinterpret_cast<const uint8_t*>(bytes.data()) + body);
  const uint64_t actual = XXH64(bytes.data(), body, 0);
  CDL_CHECK(stored == actual, "checkpoint ", path, " is corrupt: its content hash is ", std::hex,
            actual, ", the file says ", stored);
  bytes.resize(body);
  return bytes;
}

// The named arrays of a verified checkpoint body, every field checked against the bytes.
std::map<std::string, Array> parseArchive(const std::string& body) {
  const auto* data = reinterpret_cast<const uint8_t*>(body.data());
  ByteReader r(data, body.size());
  CDL_CHECK(std::memcmp(r.takeBytes(sizeof(kMagic), "the magic"), kMagic, sizeof(kMagic)) == 0,
            "bad magic at its start");
  std::map<std::string, Array> arrays;
  while (r.left() > 0) {
    const uint16_t nameBytes = r.take<uint16_t>("an entry's name length");
    CDL_CHECK(nameBytes >= 1 && nameBytes <= kMaxNameBytes, "an entry name of ", nameBytes,
              " bytes (must be 1..", kMaxNameBytes, ")");
    const uint8_t* n = r.takeBytes(nameBytes, "an entry's name");
    std::string name(reinterpret_cast<const char*>(n), nameBytes);
    const uint8_t type = r.take<uint8_t>("an entry's type");
    CDL_CHECK(type <= static_cast<uint8_t>(ArrayType::kU8), "entry '", name, "': unknown type ",
              int(type));
    Array a;
    a.type = static_cast<ArrayType>(type);
    const uint8_t dims = r.take<uint8_t>("an entry's dimension count");
    CDL_CHECK(dims <= kMaxDims, "entry '", name, "': ", int(dims), " dimensions, at most ",
              kMaxDims);
    // Every dimension and the running product stay within the bytes left, so nothing overflows.
    uint64_t elements = 1;
    for (int d = 0; d < dims; ++d) {
      const uint64_t size = r.takeVarint("an entry's shape");
      CDL_CHECK(size <= r.left() && (size == 0 || elements <= r.left() / size), "entry '", name,
                "': its shape claims more than the ", r.left(), " bytes left");
      elements *= size;
      a.shape.push_back(static_cast<int64_t>(size));
    }
    const size_t width = widthOf(a.type);
    CDL_CHECK(elements <= r.left() / width, "entry '", name, "': ", elements, " elements of ",
              width, " bytes, but only ", r.left(), " bytes are left");
    a.bytes = static_cast<size_t>(elements) * width;
    a.data = r.takeBytes(a.bytes, "an entry's elements");
    CDL_CHECK(arrays.count(name) == 0, "entry '", name, "' appears twice");
    arrays.emplace(std::move(name), a);
  }
  return arrays;
}

// Reads a checkpoint's named arrays, consuming each one used, so that what is left over (an
// array the model or optimizer does not have) can be named.
class ArchiveReader {
 public:
  explicit ArchiveReader(const std::string& body) : arrays_(parseArchive(body)) {}

  bool has(const std::string& name) const { return arrays_.count(name) != 0; }

  // The array `name`, which must be of `type` (and, given, of `shape`); consumed.
  Array take(const std::string& name, ArrayType type, const std::vector<int64_t>* shape = nullptr) {
    auto it = arrays_.find(name);
    CDL_CHECK(it != arrays_.end(), "it has no entry '", name, "'");
    Array a = it->second;
    arrays_.erase(it);
    CDL_CHECK(a.type == type, "entry '", name, "' is ", typeName(a.type), ", expected ",
              typeName(type));
    CDL_CHECK(shape == nullptr || a.shape == *shape, "entry '", name, "' has shape ",
              shapeText(a.shape), ", expected ", shapeText(*shape));
    return a;
  }
  // Copies array `name` into t, which it must match in type and shape.
  void takeInto(const std::string& name, const at::Tensor& t) {
    CDL_CHECK(t.is_contiguous(), "tensor '", name, "' is not contiguous");
    const std::vector<int64_t> shape = t.sizes().vec();
    const Array a = take(name, typeOf(t, name), &shape);
    if (t.device().is_cpu()) {
      std::memcpy(t.data_ptr(), a.data, a.bytes);
      return;
    }
    at::Tensor host = at::empty(shape, t.options().device(at::kCPU));
    std::memcpy(host.data_ptr(), a.data, a.bytes);
    t.copy_(host);
  }
  // A new tensor of array `name`, which must have `shape`.
  at::Tensor takeTensor(const std::string& name, ArrayType type,
                        const std::vector<int64_t>& shape) {
    const Array a = take(name, type, &shape);
    const at::ScalarType st = type == ArrayType::kF32   ? at::kFloat
                              : type == ArrayType::kF64 ? at::kDouble
                              : type == ArrayType::kI64 ? at::kLong
                                                        : at::kByte;
    at::Tensor t = at::empty(shape, st);
    std::memcpy(t.data_ptr(), a.data, a.bytes);
    return t;
  }
  template <typename T>
  std::vector<T> takeVector(const std::string& name, ArrayType type) {
    const Array a = take(name, type);
    CDL_CHECK(a.shape.size() == 1, "entry '", name, "' has ", a.shape.size(),
              " dimensions, expected 1");
    std::vector<T> v(a.bytes / sizeof(T));
    if (a.bytes > 0) std::memcpy(v.data(), a.data, a.bytes);
    return v;
  }
  std::string takeText(const std::string& name) {
    const auto v = takeVector<uint8_t>(name, ArrayType::kU8);
    return std::string(v.begin(), v.end());
  }
  // The names left that start with prefix, in order.
  std::vector<std::string> namesUnder(const std::string& prefix) const {
    std::vector<std::string> out;
    for (auto it = arrays_.lower_bound(prefix);
         it != arrays_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      out.push_back(it->first);
    }
    return out;
  }
  // Throws naming an entry nobody took under prefix.
  void requireAllTaken(const std::string& prefix, const char* what) const {
    const auto left = namesUnder(prefix);
    CDL_CHECK(left.empty(), "it holds ", what, " '", left.front().substr(prefix.size()),
              "' that this run does not have (a checkpoint of another model or optimizer?)");
  }

 private:
  static std::string shapeText(const std::vector<int64_t>& s) {
    std::string t = "[";
    for (size_t i = 0; i < s.size(); ++i) t += (i ? "," : "") + std::to_string(s[i]);
    return t + "]";
  }
  std::map<std::string, Array> arrays_;
};

// The optimizer's parameters by name (the model's names for them).
std::vector<std::pair<std::string, at::Tensor>> optimizedParameters(
    const torch::nn::Module& model, const torch::optim::Optimizer& optimizer) {
  std::map<const void*, std::string> names;
  for (const auto& p : model.named_parameters()) names[p.value().unsafeGetTensorImpl()] = p.key();
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& group : optimizer.param_groups()) {
    for (const at::Tensor& p : group.params()) {
      auto it = names.find(p.unsafeGetTensorImpl());
      CDL_CHECK(it != names.end(), "the optimizer holds a parameter the model does not");
      out.emplace_back(it->second, p);
    }
  }
  return out;
}

void writeOptimizer(ArchiveWriter& w, const torch::nn::Module& model,
                    const torch::optim::Optimizer& optimizer) {
  const auto& state = optimizer.state();
  for (const auto& [name, p] : optimizedParameters(model, optimizer)) {
    auto it = state.find(optimizerStateKey(p));
    if (it == state.end()) continue;
    const std::string at = "optim/" + name + "/";
    const torch::optim::OptimizerParamState* s = it->second.get();
    if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(s)) {
      if (sgd->momentum_buffer().defined()) w.add(at + "momentum_buffer", sgd->momentum_buffer());
    } else if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(s)) {
      const int64_t step = adam->step();
      w.add(at + "step", ArrayType::kI64, {}, &step, sizeof(step));
      w.add(at + "exp_avg", adam->exp_avg());
      w.add(at + "exp_avg_sq", adam->exp_avg_sq());
      if (adam->max_exp_avg_sq().defined()) w.add(at + "max_exp_avg_sq", adam->max_exp_avg_sq());
    } else {
      CDL_THROW("parameter '", name, "': optimizer state of a kind checkpoints do not hold");
    }
  }
}

void readOptimizer(ArchiveReader& r, const torch::nn::Module& model,
                   torch::optim::Optimizer& optimizer) {
  const bool sgd = dynamic_cast<torch::optim::SGD*>(&optimizer) != nullptr;
  const bool adam = dynamic_cast<torch::optim::Adam*>(&optimizer) != nullptr;
  CDL_CHECK(sgd || adam, "an optimizer whose state checkpoints do not hold");
  auto& state = optimizer.state();
  state.clear();
  for (const auto& [name, p] : optimizedParameters(model, optimizer)) {
    const std::string at = "optim/" + name + "/";
    const std::vector<int64_t> shape = p.sizes().vec();
    if (sgd && r.has(at + "momentum_buffer")) {
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(
          r.takeTensor(at + "momentum_buffer", ArrayType::kF32, shape).to(p.device()));
      state[optimizerStateKey(p)] = std::move(s);
    } else if (adam && r.has(at + "step")) {
      auto s = std::make_unique<torch::optim::AdamParamState>();
      const std::vector<int64_t> scalar;
      s->step(r.takeTensor(at + "step", ArrayType::kI64, scalar).item<int64_t>());
      s->exp_avg(r.takeTensor(at + "exp_avg", ArrayType::kF32, shape).to(p.device()));
      s->exp_avg_sq(r.takeTensor(at + "exp_avg_sq", ArrayType::kF32, shape).to(p.device()));
      if (r.has(at + "max_exp_avg_sq")) {
        s->max_exp_avg_sq(
            r.takeTensor(at + "max_exp_avg_sq", ArrayType::kF32, shape).to(p.device()));
      }
      state[optimizerStateKey(p)] = std::move(s);
    }
  }
  r.requireAllTaken("optim/", "optimizer state");
}

void writeModel(ArchiveWriter& w, const torch::nn::Module& model) {
  for (const auto& p : model.named_parameters()) w.add("param/" + p.key(), p.value());
  for (const auto& b : model.named_buffers()) w.add("buffer/" + b.key(), b.value());
}

void readModel(ArchiveReader& r, torch::nn::Module& model) {
  at::NoGradGuard noGrad;
  for (const auto& p : model.named_parameters()) r.takeInto("param/" + p.key(), p.value());
  for (const auto& b : model.named_buffers()) r.takeInto("buffer/" + b.key(), b.value());
  r.requireAllTaken("param/", "parameter");
  r.requireAllTaken("buffer/", "buffer");
}

// The metadata's fields, in order.
std::vector<int64_t> metaOf(const TrainState& s) {
  return {kFormat,
          s.step,
          s.epoch,
          s.batchInEpoch,
          s.worldSize,
          s.rank,
          static_cast<int64_t>(s.configHash),
          static_cast<int64_t>(s.wireBytes),
          static_cast<int64_t>(s.fp32WireBytes),
          static_cast<int64_t>(s.cutWireBytes),
          static_cast<int64_t>(s.cutFp32Bytes),
          s.skippedSteps,
          s.capturedSteps,
          static_cast<int64_t>(s.sentSincePlan),
          static_cast<int64_t>(s.stepsSincePlan)};
}

void readMeta(ArchiveReader& r, TrainState& s) {
  const std::vector<int64_t> shape{kMetaFields};
  const Array a = r.take("meta", ArrayType::kI64, &shape);
  std::vector<int64_t> v(kMetaFields);
  std::memcpy(v.data(), a.data, a.bytes);
  CDL_CHECK(v[0] == kFormat, "checkpoint format ", v[0], ", this build reads ", kFormat);
  CDL_CHECK(v[1] >= 0 && v[2] >= 0 && v[3] >= 0 && v[4] >= 1 && v[4] <= (1 << 20) && v[5] >= 0 &&
                v[5] < v[4] && v[11] >= 0 && v[12] >= 0,
            "its metadata is out of range (step ", v[1], ", epoch ", v[2], ", batch ", v[3],
            ", rank ", v[5], " of ", v[4], ")");
  s.step = v[1];
  s.epoch = v[2];
  s.batchInEpoch = v[3];
  s.worldSize = static_cast<int>(v[4]);
  s.rank = static_cast<int>(v[5]);
  s.configHash = static_cast<uint64_t>(v[6]);
  s.wireBytes = static_cast<uint64_t>(v[7]);
  s.fp32WireBytes = static_cast<uint64_t>(v[8]);
  s.cutWireBytes = static_cast<uint64_t>(v[9]);
  s.cutFp32Bytes = static_cast<uint64_t>(v[10]);
  s.skippedSteps = v[11];
  s.capturedSteps = v[12];
  s.sentSincePlan = static_cast<uint64_t>(v[13]);
  s.stepsSincePlan = static_cast<uint64_t>(v[14]);
}

// "scheme/<tensor>/<field>": the field is what follows the last '/'.
void readSchemeState(ArchiveReader& r, TrainState& s) {
  const std::string prefix = "scheme/";
  for (const std::string& name : r.namesUnder(prefix)) {
    const size_t slash = name.rfind('/');
    CDL_CHECK(slash > prefix.size() && slash + 1 < name.size(), "bad scheme-state entry '", name,
              "'");
    s.schemeState[name.substr(prefix.size(), slash - prefix.size())][name.substr(slash + 1)] =
        r.takeVector<float>(name, ArrayType::kF32);
  }
}

}  // namespace

const char* const kCheckpointSuffix = ".ckpt";

std::string checkpointPath(const std::string& dir, int64_t step, int rank) {
  char name[64];
  std::snprintf(name, sizeof(name), "ckpt-%010lld.rank%d%s", static_cast<long long>(step), rank,
                kCheckpointSuffix);
  return dir + "/" + name;
}

std::vector<int64_t> checkpointSteps(const std::string& dir, int rank) {
  std::vector<int64_t> steps;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return steps;
  const std::string suffix = ".rank" + std::to_string(rank) + kCheckpointSuffix;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() != 5 + 10 + suffix.size() || name.compare(0, 5, "ckpt-") != 0 ||
        name.compare(15, std::string::npos, suffix) != 0) {
      continue;
    }
    const std::string digits = name.substr(5, 10);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    steps.push_back(std::stoll(digits));
  }
  ::closedir(d);
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::string saveCheckpoint(const std::string& dir, const torch::nn::Module& model,
                           const torch::optim::Optimizer& optimizer, const TrainState& state) {
  const std::string path = checkpointPath(dir, state.step, state.rank);
  // Streamed straight into the file; a failure leaves the earlier checkpoints intact.
  writeFileAtomically(path, [&](const ByteSink& sink) {
    ArchiveWriter w(sink);
    w.addVector("meta", ArrayType::kI64, metaOf(state));
    writeModel(w, model);
    writeOptimizer(w, model, optimizer);
    for (const auto& [tensor, fields] : state.schemeState) {
      for (const auto& [field, values] : fields) {
        w.addVector("scheme/" + tensor + "/" + field, ArrayType::kF32, values);
      }
    }
    for (const auto& [tensor, spec] : state.ratePlan) w.addText("plan/" + tensor, spec);
    for (const auto& [tensor, sum] : state.captured) {
      w.addVector("captured/" + tensor, ArrayType::kF32, sum);
    }
    w.add("wall_seconds", ArrayType::kF64, {}, &state.wallSeconds, sizeof(double));
    if (!state.metricsWindow.empty()) {
      w.addVector("metrics_window", ArrayType::kF64, state.metricsWindow);
    }
    if (state.rngState.defined()) w.add("rng", state.rngState);
    if (!state.device.empty()) w.addText("device", state.device);
    faultPoint("checkpoint-write", state.step);  // the arrays written, the trailer not yet
    w.finish();
  });
  return path;
}

void pruneCheckpoints(const std::string& dir, int rank, int64_t keep) {
  CDL_CHECK(keep >= 1, "checkpoint: keep = ", keep, ", must be >= 1");
  const std::vector<int64_t> steps = checkpointSteps(dir, rank);
  for (size_t k = 0; k + static_cast<size_t>(keep) < steps.size(); ++k) {
    std::remove(checkpointPath(dir, steps[k], rank).c_str());
  }
}

std::string checkpointProblem(const std::string& path) {
  try {
    readVerified(path);
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

TrainState loadCheckpoint(const std::string& path, torch::nn::Module& model,
                          torch::optim::Optimizer& optimizer) {
  const std::string body = readVerified(path);
  TrainState s;
  try {
    ArchiveReader r(body);
    readMeta(r, s);
    readModel(r, model);
    readOptimizer(r, model, optimizer);
    readSchemeState(r, s);
    for (const std::string& name : r.namesUnder("plan/")) {
      s.ratePlan[name.substr(5)] = r.takeText(name);
    }
    for (const std::string& name : r.namesUnder("captured/")) {
      s.captured[name.substr(9)] = r.takeVector<float>(name, ArrayType::kF32);
    }
    const std::vector<int64_t> scalar;
    const Array wall = r.take("wall_seconds", ArrayType::kF64, &scalar);
    std::memcpy(&s.wallSeconds, wall.data, sizeof(double));
    CDL_CHECK(std::isfinite(s.wallSeconds) && s.wallSeconds >= 0, "its wall_seconds ",
              s.wallSeconds, " is not a time");
    if (r.has("metrics_window")) {
      s.metricsWindow = r.takeVector<double>("metrics_window", ArrayType::kF64);
    }
    if (r.has("rng")) {
      const auto bytes = r.takeVector<uint8_t>("rng", ArrayType::kU8);
      s.rngState = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
      std::copy(bytes.begin(), bytes.end(), s.rngState.data_ptr<uint8_t>());
    }
    if (r.has("device")) s.device = r.takeText("device");
    r.requireAllTaken("", "an entry");
  } catch (const Error& e) {
    CDL_THROW("checkpoint ", path, ": ", errorBody(e.what()));
  } catch (const std::exception& e) {
    CDL_THROW("checkpoint ", path, " cannot be loaded: ", e.what());
  }
  return s;
}

void loadCheckpointWeights(const std::string& path, torch::nn::Module& model) {
  const std::string body = readVerified(path);
  try {
    ArchiveReader r(body);
    TrainState s;
    readMeta(r, s);
    readModel(r, model);
  } catch (const Error& e) {
    CDL_THROW("checkpoint ", path, ": ", errorBody(e.what()));
  } catch (const std::exception& e) {
    CDL_THROW("checkpoint ", path, " cannot be loaded: ", e.what());
  }
}

void* optimizerStateKey(const at::Tensor& p) { return p.unsafeGetTensorImpl(); }

}  // namespace cdl::core
