#include "core/checkpoint.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <dirent.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "core/files.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// 3: the content hash trailer; 2: scheme state as (tensor, field) entries; 1 had one flat name
// per vector.
constexpr int64_t kFormat = 3;
constexpr char kTrailerMagic[8] = {'C', 'D', 'L', 'C', 'K', 'P', 'T', '3'};
constexpr size_t kTrailerBytes = 16;  // xxhash64 of everything before it, then the magic

// The archive bytes of a checkpoint file after its trailer is checked; errors say what is wrong.
std::string readVerified(const std::string& path) {
  std::string bytes = readWholeFile(path, "checkpoint");
  CDL_CHECK(bytes.size() >= kTrailerBytes &&
                std::memcmp(bytes.data() + bytes.size() - 8, kTrailerMagic, 8) == 0,
            "checkpoint ", path, " is truncated or not a cdl checkpoint of format ", kFormat,
            " (no content hash at its end)");
  const size_t body = bytes.size() - kTrailerBytes;
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + body, 8);
  const uint64_t actual = XXH64(bytes.data(), body, 0);
  CDL_CHECK(stored == actual, "checkpoint ", path, " is corrupt: its content hash is ", std::hex,
            actual, ", the file says ", stored);
  bytes.resize(body);
  return bytes;
}

at::Tensor int64Tensor(const std::vector<int64_t>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::kLong);
  std::copy(v.begin(), v.end(), t.data_ptr<int64_t>());
  return t;
}

at::Tensor floatTensor(const std::vector<float>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::kFloat);
  std::copy(v.begin(), v.end(), t.data_ptr<float>());
  return t;
}

at::Tensor bytesTensor(const std::string& s) {
  at::Tensor t = at::empty({static_cast<int64_t>(s.size())}, at::kByte);
  std::copy(s.begin(), s.end(), t.data_ptr<uint8_t>());
  return t;
}

std::string textOf(const at::Tensor& t, const char* what) {
  CDL_CHECK(t.scalar_type() == at::kByte && t.dim() == 1, "bad ", what);
  return std::string(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()),
                     static_cast<size_t>(t.numel()));
}

void readRateState(torch::serialize::InputArchive& archive, TrainState& s) {
  at::Tensor plan, names, steps;
  if (!archive.try_read("rate_plan", plan)) return;
  std::istringstream lines(textOf(plan, "rate plan"));
  for (std::string line; std::getline(lines, line);) {
    const size_t tab = line.find('\t');
    CDL_CHECK(tab != std::string::npos, "bad rate plan entry '", line, "'");
    s.ratePlan[line.substr(0, tab)] = line.substr(tab + 1);
  }
  archive.read("cap_names", names);
  std::istringstream capLines(textOf(names, "captured gradient names"));
  int64_t i = 0;
  for (std::string name; std::getline(capLines, name); ++i) {
    at::Tensor t;
    archive.read("cap" + std::to_string(i), t);
    CDL_CHECK(t.scalar_type() == at::kFloat && t.dim() == 1, "bad captured gradients of '", name,
              "'");
    s.captured[name].assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  archive.read("cap_steps", steps);
  CDL_CHECK(steps.scalar_type() == at::kLong && steps.numel() == 3, "bad captured step count");
  s.capturedSteps = steps.data_ptr<int64_t>()[0];
  s.sentSincePlan = static_cast<uint64_t>(steps.data_ptr<int64_t>()[1]);
  s.stepsSincePlan = static_cast<uint64_t>(steps.data_ptr<int64_t>()[2]);
}

void readCutBytes(torch::serialize::InputArchive& archive, TrainState& s) {
  at::Tensor t;
  if (!archive.try_read("cut_bytes", t)) return;
  CDL_CHECK(t.scalar_type() == at::kLong && t.numel() == 3, "bad cut byte counts");
  s.cutWireBytes = static_cast<uint64_t>(t.data_ptr<int64_t>()[0]);
  s.cutFp32Bytes = static_cast<uint64_t>(t.data_ptr<int64_t>()[1]);
  s.skippedSteps = t.data_ptr<int64_t>()[2];
}

}  // namespace

std::string checkpointPath(const std::string& dir, int64_t step, int rank) {
  char name[64];
  std::snprintf(name, sizeof(name), "ckpt-%010lld.rank%d.pt", static_cast<long long>(step), rank);
  return dir + "/" + name;
}

std::vector<int64_t> checkpointSteps(const std::string& dir, int rank) {
  std::vector<int64_t> steps;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return steps;
  const std::string suffix = ".rank" + std::to_string(rank) + ".pt";
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
  torch::serialize::OutputArchive archive;
  {
    torch::serialize::OutputArchive m;
    model.save(m);
    archive.write("model", m);
  }
  {
    torch::serialize::OutputArchive o;
    optimizer.save(o);
    archive.write("optimizer", o);
  }
  archive.write("meta",
                int64Tensor({kFormat, state.step, state.epoch, state.batchInEpoch, state.worldSize,
                             state.rank, static_cast<int64_t>(state.configHash),
                             static_cast<int64_t>(state.wireBytes),
                             static_cast<int64_t>(state.fp32WireBytes)}));
  // One line "tensor<TAB>field" per vector, in order; vector i is "ef<i>".
  std::string names;
  int64_t i = 0;
  for (const auto& [tensor, fields] : state.schemeState) {
    for (const auto& [field, values] : fields) {
      names += tensor + "\t" + field + "\n";
      archive.write("ef" + std::to_string(i++), floatTensor(values));
    }
  }
  archive.write("ef_names", bytesTensor(names));
  // Adaptive rates: "tensor<TAB>spec" lines; the captured sums as "cap<i>" in the order of
  // "cap_names". Optional entries: checkpoints without them read as runs without a plan.
  std::string plan, capNames;
  for (const auto& [tensor, spec] : state.ratePlan) plan += tensor + "\t" + spec + "\n";
  archive.write("rate_plan", bytesTensor(plan));
  int64_t c = 0;
  for (const auto& [tensor, sum] : state.captured) {
    capNames += tensor + "\n";
    archive.write("cap" + std::to_string(c++), floatTensor(sum));
  }
  archive.write("cap_names", bytesTensor(capNames));
  archive.write("cap_steps",
                int64Tensor({state.capturedSteps, static_cast<int64_t>(state.sentSincePlan),
                             static_cast<int64_t>(state.stepsSincePlan)}));
  // Optional: checkpoints without it read as runs that sent nothing across a cut.
  archive.write("cut_bytes", int64Tensor({static_cast<int64_t>(state.cutWireBytes),
                                          static_cast<int64_t>(state.cutFp32Bytes),
                                          state.skippedSteps}));
  if (!state.metricsWindow.empty()) {
    at::Tensor w = at::empty({static_cast<int64_t>(state.metricsWindow.size())}, at::kDouble);
    std::copy(state.metricsWindow.begin(), state.metricsWindow.end(), w.data_ptr<double>());
    archive.write("metrics_window", w);
  }
  if (state.rngState.defined()) archive.write("rng", state.rngState);

  // The archive streams straight into the file, hashed on the way; a failure leaves the earlier
  // checkpoints intact.
  writeFileAtomically(path, [&](const ByteSink& sink) {
    XXH64_state_t* h = XXH64_createState();
    CDL_CHECK(h != nullptr, "checkpoint ", path, ": out of memory");
    XXH64_reset(h, 0);
    try {
      archive.save_to([&](const void* data, size_t n) -> size_t {
        XXH64_update(h, data, n);
        sink(data, n);
        return n;
      });
    } catch (...) {
      XXH64_freeState(h);
      throw;
    }
    faultPoint("checkpoint-write", state.step);  // the archive written, its hash not yet
    const uint64_t hash = XXH64_digest(h);
    XXH64_freeState(h);
    sink(&hash, sizeof(hash));
    sink(kTrailerMagic, sizeof(kTrailerMagic));
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
  TrainState s;
  const std::string bytes = readVerified(path);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(bytes.data(), bytes.size());
    torch::serialize::InputArchive m, o;
    archive.read("model", m);
    model.load(m);
    archive.read("optimizer", o);
    optimizer.load(o);
    at::Tensor meta;
    archive.read("meta", meta);
    CDL_CHECK(meta.scalar_type() == at::kLong && meta.numel() == 9, "bad metadata");
    const int64_t* v = meta.data_ptr<int64_t>();
    CDL_CHECK(v[0] == kFormat, "checkpoint format ", v[0], ", this build reads ", kFormat);
    s.step = v[1];
    s.epoch = v[2];
    s.batchInEpoch = v[3];
    s.worldSize = static_cast<int>(v[4]);
    s.rank = static_cast<int>(v[5]);
    s.configHash = static_cast<uint64_t>(v[6]);
    s.wireBytes = static_cast<uint64_t>(v[7]);
    s.fp32WireBytes = static_cast<uint64_t>(v[8]);
    at::Tensor names;
    archive.read("ef_names", names);
    std::istringstream lines(textOf(names, "error-feedback names"));
    std::string name;
    for (int64_t i = 0; std::getline(lines, name); ++i) {
      const size_t tab = name.find('\t');
      CDL_CHECK(tab != std::string::npos, "bad scheme-state entry '", name, "'");
      at::Tensor t;
      archive.read("ef" + std::to_string(i), t);
      CDL_CHECK(t.scalar_type() == at::kFloat && t.dim() == 1, "bad scheme-state tensor '", name,
                "'");
      const float* p = t.data_ptr<float>();
      s.schemeState[name.substr(0, tab)][name.substr(tab + 1)].assign(p, p + t.numel());
    }
    readRateState(archive, s);
    readCutBytes(archive, s);
    at::Tensor window;
    if (archive.try_read("metrics_window", window)) {
      CDL_CHECK(window.scalar_type() == at::kDouble && window.dim() == 1, "bad metrics window");
      s.metricsWindow.assign(window.data_ptr<double>(), window.data_ptr<double>() + window.numel());
    }
    at::Tensor rng;
    if (archive.try_read("rng", rng)) s.rngState = rng;
  } catch (const Error& e) {
    CDL_THROW("checkpoint ", path, ": ", e.what());
  } catch (const std::exception& e) {
    CDL_THROW("checkpoint ", path,
              " cannot be read (truncated, corrupt or from another model?): ", e.what());
  }
  return s;
}

void loadCheckpointWeights(const std::string& path, torch::nn::Module& model) {
  const std::string bytes = readVerified(path);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(bytes.data(), bytes.size());
    at::Tensor meta;
    archive.read("meta", meta);
    CDL_CHECK(meta.scalar_type() == at::kLong && meta.numel() == 9, "bad metadata");
    const int64_t format = meta.data_ptr<int64_t>()[0];
    CDL_CHECK(format == kFormat, "checkpoint format ", format, ", this build reads ", kFormat);
    torch::serialize::InputArchive m;
    archive.read("model", m);
    model.load(m);
  } catch (const Error& e) {
    CDL_THROW("checkpoint ", path, ": ", e.what());
  } catch (const std::exception& e) {
    CDL_THROW("checkpoint ", path,
              " cannot be read (truncated, corrupt or from another model?): ", e.what());
  }
}

}  // namespace cdl::core
