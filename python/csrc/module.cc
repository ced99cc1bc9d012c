// cdl._cdl: cdl's codecs, the pieces of its compressed allreduce (Note [Compressed chunks]) and
// its .cdlm reader for Python. The only translation unit with torch's pybind headers; what needs
// neither torch nor Python is in plain.cc.
#include <ATen/ops/empty.h>
#include <torch/csrc/utils/pybind.h>

#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/codec/spec.h"
#include "comm/codec/wire.h"
#include "comm/reduce/adaptive_rates.h"
#include "comm/reduce/compressed_allreduce.h"
#include "comm/reduce/compressed_chunks.h"
#include "comm/reduce/powersgd.h"
#include "comm/reduce/rate_planner.h"
#include "comm/reduce/scheme.h"
#include "comm/reduce/scheme_spec.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"
#include "python/csrc/plain.h"

namespace cdl::py {
namespace {

namespace pyb = pybind11;
using comm::ChunkStage;

// Runs f, turning a cdl::Error into a ValueError (the input was at fault) with its message
// without the "file.cc:LINE" prefix.
template <typename F>
auto badInput(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw pyb::value_error(errorBody(e.what()));
  }
}

// t as a contiguous fp32 CPU tensor; anything else is a TypeError naming `what`.
void requireFloatCpu(const at::Tensor& t, const char* what) {
  if (t.scalar_type() != at::kFloat || !t.device().is_cpu()) {
    throw pyb::type_error(std::string(what) + " must be a float32 CPU tensor, not " +
                          std::string(c10::toString(t.scalar_type())) + " on " + t.device().str());
  }
  if (!t.is_contiguous()) throw pyb::value_error(std::string(what) + " must be contiguous");
}

void requireBytes(const at::Tensor& t, const char* what) {
  if (t.scalar_type() != at::kByte || !t.device().is_cpu() || !t.is_contiguous()) {
    throw pyb::type_error(std::string(what) + " must be a contiguous uint8 CPU tensor");
  }
}

// A rank of a group of `world`; anything else is a ValueError (it would index outside x).
void requireRank(int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw pyb::value_error("rank " + std::to_string(rank) + " is not in a group of " +
                           std::to_string(world));
  }
}

at::Tensor bytesTensor(const Bytes& b) {
  at::Tensor t = at::empty({static_cast<int64_t>(b.size())}, at::kByte);
  if (!b.empty()) std::memcpy(t.data_ptr<uint8_t>(), b.data(), b.size());
  return t;
}

// A codec with its rate, as a spec names it: what the DDP hook calls on each bucket.
class PyCodec {
 public:
  explicit PyCodec(const std::string& spec)
      : spec_(badInput([&] { return codecSpec(spec); })),
        codec_(comm::makeCodec(spec_.codec)),
        text_(comm::formatCodecSpec(spec_)) {}

  const std::string& spec() const { return text_; }
  bool summable() const { return codec_->summable(); }
  bool lossless() const { return codec_->lossless(); }

  // Where each of `world` ranks' chunk of n elements begins (world + 1 entries).
  std::vector<int64_t> chunkBegins(int64_t n, int world) const {
    requireRank(0, world);
    const int64_t align = comm::chunkAlign(*codec_, spec_.rate);
    std::vector<int64_t> begin;
    comm::chunkBegins(n, align, 0, (n + align - 1) / align, world, &begin);
    return begin;
  }

  // x += residual, then chunk r of x encoded for rank r (residual becomes what it lost):
  // the payloads back to back and their sizes.
  std::pair<at::Tensor, std::vector<int64_t>> encodeChunks(at::Tensor x, at::Tensor residual,
                                                           uint64_t key, int rank, int world) {
    requireFloatCpu(x, "the bucket");
    requireRank(rank, world);
    requireFloatCpu(residual, "the residual");
    const int64_t n = x.numel();
    if (residual.numel() != n)
      throw pyb::value_error("the residual's size differs from the bucket's");
    float* px = x.data_ptr<float>();
    float* pr = residual.data_ptr<float>();
    const std::vector<int64_t> begin = chunkBegins(n, world);
    std::vector<Bytes> payloads(static_cast<size_t>(world));
    {
      pyb::gil_scoped_release nogil;
      badInput([&] {
        comm::addResidual(px, pr, n);
        for (int r = 0; r < world; ++r) {
          comm::encodeRange(*codec_, px + begin[r], begin[r + 1] - begin[r], spec_.rate,
                            comm::chunkKey(key, ChunkStage::kScatter, rank, r), &payloads[r],
                            pr + begin[r]);
        }
      });
    }
    return concat(payloads);
  }

  // This rank's chunk of x becomes the sum of the payloads in `in` (one per rank, at offsets
  // with sizes, in rank order).
  void sumChunk(at::Tensor in, const std::vector<int64_t>& offsets,
                const std::vector<int64_t>& sizes, at::Tensor x, int rank, int world) {
    requireFloatCpu(x, "the bucket");
    requireRank(rank, world);
    const std::vector<int64_t> begin = chunkBegins(x.numel(), world);
    float* mine = x.data_ptr<float>() + begin[rank];
    const int64_t len = begin[rank + 1] - begin[rank];
    decodeEach(in, offsets, sizes, world, [&](const auto& ptrs, const auto& lens) {
      comm::decodeSum(*codec_, ptrs.data(), lens.data(), world, mine, len);
    });
  }

  // This rank's (summed) chunk of x encoded: the payload it sends to every rank.
  at::Tensor encodeOwnChunk(at::Tensor x, uint64_t key, int rank, int world) {
    requireFloatCpu(x, "the bucket");
    requireRank(rank, world);
    const std::vector<int64_t> begin = chunkBegins(x.numel(), world);
    const float* mine = x.data_ptr<float>() + begin[rank];
    const int64_t len = begin[rank + 1] - begin[rank];
    Bytes out;
    {
      pyb::gil_scoped_release nogil;
      badInput([&] {
        comm::encodeRange(*codec_, mine, len, spec_.rate,
                          comm::chunkKey(key, ChunkStage::kReduce, rank, rank), &out);
      });
    }
    return bytesTensor(out);
  }

  // Every rank's reduced chunk decoded into x, then the average when asked.
  void decodeChunks(at::Tensor in, const std::vector<int64_t>& offsets,
                    const std::vector<int64_t>& sizes, at::Tensor x, int world, bool average) {
    requireFloatCpu(x, "the bucket");
    const std::vector<int64_t> begin = chunkBegins(x.numel(), world);
    float* px = x.data_ptr<float>();
    decodeEach(in, offsets, sizes, world, [&](const auto& ptrs, const auto& lens) {
      for (int r = 0; r < world; ++r) {
        codec_->decode(ptrs[r], lens[r], px + begin[r], begin[r + 1] - begin[r], false);
      }
      if (average) comm::averageOverRanks(px, x.numel(), world);
    });
  }

  // The gather path (top-k): x += residual, encoded whole (residual becomes what it lost).
  at::Tensor encodeWhole(at::Tensor x, at::Tensor residual, uint64_t key, int rank) {
    requireFloatCpu(x, "the bucket");
    if (rank < 0) throw pyb::value_error("rank " + std::to_string(rank) + " is negative");
    requireFloatCpu(residual, "the residual");
    if (residual.numel() != x.numel()) {
      throw pyb::value_error("the residual's size differs from the bucket's");
    }
    Bytes out;
    float* px = x.data_ptr<float>();
    float* pr = residual.data_ptr<float>();
    const int64_t n = x.numel();
    {
      pyb::gil_scoped_release nogil;
      badInput([&] {
        comm::addResidual(px, pr, n);
        comm::encodeRange(*codec_, px, n, spec_.rate,
                          comm::chunkKey(key, ChunkStage::kGather, rank, 0), &out, pr);
      });
    }
    return bytesTensor(out);
  }

  // The gather path: every rank's payload summed into x in rank order, then the average.
  void decodeSum(at::Tensor in, const std::vector<int64_t>& offsets,
                 const std::vector<int64_t>& sizes, at::Tensor x, int world, bool average) {
    requireFloatCpu(x, "the bucket");
    float* px = x.data_ptr<float>();
    decodeEach(in, offsets, sizes, world, [&](const auto& ptrs, const auto& lens) {
      comm::decodeSum(*codec_, ptrs.data(), lens.data(), world, px, x.numel());
      if (average) comm::averageOverRanks(px, x.numel(), world);
    });
  }

 private:
  static std::pair<at::Tensor, std::vector<int64_t>> concat(const std::vector<Bytes>& parts) {
    std::vector<int64_t> sizes;
    int64_t total = 0;
    for (const Bytes& p : parts)
      sizes.push_back(static_cast<int64_t>(p.size())), total += sizes.back();
    at::Tensor t = at::empty({total}, at::kByte);
    uint8_t* out = t.data_ptr<uint8_t>();
    for (const Bytes& p : parts) {
      if (!p.empty()) std::memcpy(out, p.data(), p.size());
      out += p.size();
    }
    return {t, sizes};
  }

  // Calls fn(pointers, sizes) on the `world` payloads of `in` at offsets, checked to lie inside
  // it, without the GIL; a cdl::Error becomes a ValueError.
  template <typename Fn>
  void decodeEach(const at::Tensor& in, const std::vector<int64_t>& offsets,
                  const std::vector<int64_t>& sizes, int world, Fn&& fn) {
    requireBytes(in, "the payloads");
    if (static_cast<int>(offsets.size()) != world || static_cast<int>(sizes.size()) != world) {
      throw pyb::value_error("expected one payload offset and size per rank");
    }
    std::vector<const uint8_t*> ptrs(static_cast<size_t>(world));
    std::vector<size_t> lens(static_cast<size_t>(world));
    const uint8_t* base = in.data_ptr<uint8_t>();
    for (int r = 0; r < world; ++r) {
      if (offsets[r] < 0 || sizes[r] < 0 || offsets[r] + sizes[r] > in.numel()) {
        throw pyb::value_error("payload of rank " + std::to_string(r) + " lies outside the buffer");
      }
      ptrs[r] = base + offsets[r];
      lens[r] = static_cast<size_t>(sizes[r]);
    }
    pyb::gil_scoped_release nogil;
    badInput([&] { fn(ptrs, lens); });
  }

  comm::CodecSpec spec_;
  std::unique_ptr<comm::Codec> codec_;
  std::string text_;
};

pyb::bytes encode(const at::Tensor& t, const std::string& spec, uint64_t key) {
  const comm::CodecSpec s = badInput([&] { return codecSpec(spec); });
  const at::Tensor x = t.contiguous();
  requireFloatCpu(x, "the tensor");
  Bytes out;
  badInput([&] {
    comm::encodeRange(*comm::makeCodec(s.codec), x.data_ptr<float>(), x.numel(), s.rate, key, &out);
  });
  return pyb::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

at::Tensor decode(const pyb::bytes& data) {
  const std::string_view in = data;
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  return badInput([&] {
    const comm::PayloadHeader h = comm::readHeader(p, in.size());
    at::Tensor out = at::empty({static_cast<int64_t>(h.numel)}, at::kFloat);
    comm::makeCodec(h.codec)->decode(p, in.size(), out.data_ptr<float>(), out.numel(), false);
    return out;
  });
}

Floats floatsOf(const at::Tensor& t, const char* what) {
  const at::Tensor x = t.contiguous();
  requireFloatCpu(x, what);
  return Floats(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
}

at::Tensor tensorOf(const Floats& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::kFloat);
  if (!v.empty()) std::memcpy(t.data_ptr<float>(), v.data(), v.size() * sizeof(float));
  return t;
}

// One parameter's PowerSGD state, driven phase by phase (Note [PowerSGD phases]) by the hook,
// which runs the allreduces over its process group. Factors leave and enter as fresh tensors.
class PyPowerSgd {
 public:
  PyPowerSgd(const std::string& name, int64_t rows, int64_t cols)
      : state_(badInput([&] { return comm::PowerSgdState(name, rows, cols); })) {}

  // This rank's P of grad (rows x cols, grad becomes grad + residual), to be summed over ranks.
  at::Tensor localP(at::Tensor grad, int rank, uint64_t seed, bool errorFeedback) {
    float* g = gradOf(grad);
    const comm::PowerSgdOptions opt = options(rank, seed, errorFeedback);
    return badInput([&] { return tensorOf(comm::powerSgdLocalP(state_, g, opt)); });
  }

  // The summed P in, this rank's Q out (to be summed over ranks).
  at::Tensor localQ(at::Tensor grad, const at::Tensor& pSum) {
    float* g = gradOf(grad);
    copyInto(pSum, state_.pBuffer(), "the summed P");
    return badInput([&] { return tensorOf(comm::powerSgdLocalQ(state_, g)); });
  }

  // The summed Q in; grad becomes the average of the ranks' approximations.
  void finish(at::Tensor grad, const at::Tensor& qSum, int world, bool errorFeedback) {
    float* g = gradOf(grad);
    copyInto(qSum, state_.qBuffer(), "the summed Q");
    badInput(
        [&] { comm::powerSgdFinish(state_, g, world, options(state_.rank(), 0, errorFeedback)); });
  }

  // Before a plain allreduce of grad: a residual of compressed steps is added and cleared.
  void foldResidual(at::Tensor grad, bool errorFeedback) {
    float* g = gradOf(grad);
    comm::powerSgdFoldResidual(state_, g, options(1, 0, errorFeedback));
  }

  // (rank, Q, residual) as PowerSgdSnapshot has them.
  std::tuple<int, at::Tensor, at::Tensor> snapshot() const {
    return {state_.rank(), tensorOf(state_.q()), tensorOf(state_.residual())};
  }
  void restore(int rank, const at::Tensor& q, const at::Tensor& residual) {
    comm::PowerSgdSnapshot s;
    s.rows = state_.rows();
    s.cols = state_.cols();
    s.rank = rank;
    s.q = floatsOf(q, "the saved Q");
    s.residual = floatsOf(residual, "the saved residual");
    badInput([&] { state_.restore(s); });
  }

 private:
  float* gradOf(at::Tensor& grad) const {
    requireFloatCpu(grad, "the gradient");
    if (grad.numel() != state_.rows() * state_.cols()) {
      throw pyb::value_error("PowerSGD on '" + state_.name() + "': a gradient of " +
                             std::to_string(grad.numel()) + " elements for a " +
                             std::to_string(state_.rows()) + "x" + std::to_string(state_.cols()) +
                             " state");
    }
    return grad.data_ptr<float>();
  }
  static comm::PowerSgdOptions options(int rank, uint64_t seed, bool errorFeedback) {
    comm::PowerSgdOptions opt;
    opt.rank = rank;
    opt.seed = seed;
    opt.errorFeedback = errorFeedback;
    return opt;
  }
  void copyInto(const at::Tensor& t, std::vector<float>& out, const char* what) const {
    requireFloatCpu(t, what);
    if (static_cast<size_t>(t.numel()) != out.size()) {
      throw pyb::value_error("PowerSGD on '" + state_.name() + "': " + what + " has " +
                             std::to_string(t.numel()) + " floats, expected " +
                             std::to_string(out.size()));
    }
    if (!out.empty()) std::memcpy(out.data(), t.data_ptr<float>(), out.size() * sizeof(float));
  }

  comm::PowerSgdState state_;
};

// referenceAllreduce on tensors: (each rank's result, each rank's residual after it).
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> reference(
    const std::string& spec, const std::vector<at::Tensor>& inputs,
    const std::vector<at::Tensor>& residuals, uint64_t key, bool average, int64_t segmentBytes) {
  std::vector<Floats> in, res;
  for (const at::Tensor& t : inputs) in.push_back(floatsOf(t, "an input"));
  for (const at::Tensor& t : residuals) res.push_back(floatsOf(t, "a residual"));
  std::vector<Floats> out;
  {
    pyb::gil_scoped_release nogil;
    out = badInput(
        [&] { return referenceAllreduce(spec, std::move(in), &res, key, average, segmentBytes); });
  }
  std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> r;
  for (const Floats& v : out) r.first.push_back(tensorOf(v));
  for (const Floats& v : res) r.second.push_back(tensorOf(v));
  return r;
}

// referencePowerSgd on tensors: steps[s][r] is rank r's flat bucket at step s.
std::vector<std::vector<at::Tensor>> referencePowerSgdTensors(
    const std::string& spec, const std::vector<Shape2>& shapes,
    const std::vector<std::vector<at::Tensor>>& steps, uint64_t seed) {
  std::vector<std::vector<Floats>> in;
  for (const auto& step : steps) {
    in.emplace_back();
    for (const at::Tensor& t : step) in.back().push_back(floatsOf(t, "an input"));
  }
  std::vector<std::vector<Floats>> out;
  {
    pyb::gil_scoped_release nogil;
    out = badInput([&] { return referencePowerSgd(spec, shapes, std::move(in), seed); });
  }
  std::vector<std::vector<at::Tensor>> r;
  for (const auto& step : out) {
    r.emplace_back();
    for (const Floats& v : step) r.back().push_back(tensorOf(v));
  }
  return r;
}

// The candidates of L-GreCo's families for a uniform scheme, as canonical specs.
std::vector<std::string> candidateSpecs(const std::vector<std::string>& families,
                                        const std::string& uniform, const std::string& key) {
  return badInput([&] {
    std::vector<std::string> out;
    const comm::SchemeSpec u = comm::parseSchemeSpec(uniform);
    for (const comm::SchemeSpec& s : comm::candidateGrid(families, u, key)) {
      out.push_back(comm::formatSchemeSpec(s));
    }
    return out;
  });
}

// measureCandidate on a rows x cols gradient: (valid, error, wire bytes per rank).
std::tuple<bool, double, int64_t> measureSpec(const at::Tensor& g, int64_t rows, int64_t cols,
                                              const std::string& spec, int ranks, bool isDefault) {
  const at::Tensor x = g.contiguous();
  requireFloatCpu(x, "the gradient");
  if (x.numel() != rows * cols) throw pyb::value_error("the gradient is not rows x cols");
  const comm::SchemeSpec s = badInput([&] { return comm::parseSchemeSpec(spec); });
  pyb::gil_scoped_release nogil;
  const comm::CandidateCost c = badInput(
      [&] { return comm::measureCandidate(x.data_ptr<float>(), rows, cols, s, ranks, isDefault); });
  return {c.valid, c.error, c.bytes};
}

// planRates on per-layer (error, bytes, valid) lists: (feasible, choice, error, budget, bytes,
// default bytes, default error).
std::tuple<bool, std::vector<int>, double, double, int64_t, int64_t, double> planSpecs(
    const std::vector<std::vector<double>>& errors, const std::vector<std::vector<int64_t>>& bytes,
    const std::vector<std::vector<bool>>& valid, const std::vector<int>& defaults, double alpha,
    int buckets) {
  std::vector<std::vector<comm::RateCandidate>> layers(errors.size());
  for (size_t l = 0; l < errors.size(); ++l) {
    if (bytes.size() != errors.size() || valid.size() != errors.size() ||
        bytes[l].size() != errors[l].size() || valid[l].size() != errors[l].size()) {
      throw pyb::value_error("layer " + std::to_string(l) + ": errors, bytes and valid differ");
    }
    for (size_t k = 0; k < errors[l].size(); ++k) {
      comm::RateCandidate c;
      c.error = errors[l][k];
      c.bytes = bytes[l][k];
      c.valid = valid[l][k];
      layers[l].push_back(c);
    }
  }
  comm::RatePlannerOptions opt;
  opt.alpha = alpha;
  opt.buckets = buckets;
  const comm::RatePlan p = badInput([&] { return comm::planRates(layers, defaults, opt); });
  return {p.feasible, p.choice, p.error, p.budget, p.bytes, p.defaultBytes, p.defaultError};
}

// The tensors of a .cdlm file in file order, as (name, tensor) pairs.
std::vector<std::pair<std::string, at::Tensor>> loadModel(const std::string& path) {
  const std::vector<LoadedTensor> loaded = badInput([&] { return loadModelFile(path); });
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const LoadedTensor& l : loaded) {
    at::Tensor t = at::empty(l.shape, l.isInt64 ? at::kLong : at::kFloat);
    if (l.isInt64 && !l.ints.empty()) {
      std::memcpy(t.data_ptr<int64_t>(), l.ints.data(), l.ints.size() * sizeof(int64_t));
    } else if (!l.isInt64 && !l.values.empty()) {
      std::memcpy(t.data_ptr<float>(), l.values.data(), l.values.size() * sizeof(float));
    }
    out.emplace_back(l.name, t);
  }
  return out;
}

// The bytes of a .cdlm file: meta, then (name, tensor, bits, step) with bits 0 for a float or
// int64 tensor, else the tensor holds integer levels.
pyb::bytes saveModel(const std::string& meta,
                     const std::vector<std::tuple<std::string, at::Tensor, int, float>>& items) {
  std::vector<SavedTensor> tensors;
  for (const auto& [name, tensor, bits, step] : items) {
    const at::Tensor t = tensor.detach().contiguous().cpu();
    SavedTensor s;
    s.name = name;
    s.shape = t.sizes().vec();
    if (bits > 0 || t.scalar_type() == at::kLong) {
      if (t.scalar_type() != at::kLong) {
        throw pyb::type_error("tensor '" + name + "': levels must be an int64 tensor");
      }
      auto& out = bits > 0 ? s.levels : s.ints;
      out.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
      s.isInt64 = bits == 0;
      s.bits = bits;
      s.step = step;
    } else {
      const at::Tensor f = t.to(at::kFloat);
      s.values.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
    }
    tensors.push_back(std::move(s));
  }
  const std::vector<uint8_t> bytes = badInput([&] { return encodeModel(meta, tensors); });
  return pyb::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace
}  // namespace cdl::py

PYBIND11_MODULE(_cdl, m) {
  namespace pyb = pybind11;
  using cdl::py::PyCodec;
  m.doc() = "cdl's codecs, compressed-allreduce pieces and .cdlm reader (native part)";
  m.attr("torch_version") = CDL_PY_TORCH_VERSION;
  m.def("canonical_spec", [](const std::string& s) {
    return cdl::py::badInput([&] { return cdl::comm::formatCodecSpec(cdl::py::codecSpec(s)); });
  });
  m.def("encode", &cdl::py::encode, pyb::arg("tensor"), pyb::arg("spec"),
        pyb::arg("rounding_key") = 0);
  m.def("decode", &cdl::py::decode, pyb::arg("data"));
  m.def("rounding_key", &cdl::kernels::roundingKey, pyb::arg("seed"), pyb::arg("step"),
        pyb::arg("bucket"));
  pyb::class_<PyCodec>(m, "Codec")
      .def(pyb::init<const std::string&>())
      .def_property_readonly("spec", &PyCodec::spec)
      .def_property_readonly("summable", &PyCodec::summable)
      .def_property_readonly("lossless", &PyCodec::lossless)
      .def("chunk_begins", &PyCodec::chunkBegins)
      .def("encode_chunks", &PyCodec::encodeChunks)
      .def("sum_chunk", &PyCodec::sumChunk)
      .def("encode_own_chunk", &PyCodec::encodeOwnChunk)
      .def("decode_chunks", &PyCodec::decodeChunks)
      .def("encode_whole", &PyCodec::encodeWhole)
      .def("decode_sum", &PyCodec::decodeSum);
  m.def("average", [](at::Tensor x, int world) {
    cdl::py::requireFloatCpu(x, "the bucket");
    cdl::comm::averageOverRanks(x.data_ptr<float>(), x.numel(), world);
  });
  m.def("reference_allreduce", &cdl::py::reference, pyb::arg("spec"), pyb::arg("inputs"),
        pyb::arg("residuals"), pyb::arg("rounding_key"), pyb::arg("average") = true,
        pyb::arg("segment_bytes") = cdl::comm::kDefaultSegmentBytes);
  pyb::class_<cdl::py::PyPowerSgd>(m, "PowerSgdState")
      .def(pyb::init<const std::string&, int64_t, int64_t>(), pyb::arg("name"), pyb::arg("rows"),
           pyb::arg("cols"))
      .def("local_p", &cdl::py::PyPowerSgd::localP)
      .def("local_q", &cdl::py::PyPowerSgd::localQ)
      .def("finish", &cdl::py::PyPowerSgd::finish)
      .def("fold_residual", &cdl::py::PyPowerSgd::foldResidual)
      .def("snapshot", &cdl::py::PyPowerSgd::snapshot)
      .def("restore", &cdl::py::PyPowerSgd::restore);
  m.def("powersgd_compresses", [](int64_t rows, int64_t cols, int rank) {
    return cdl::py::badInput([&] { return cdl::comm::powerSgdCompresses(rows, cols, rank); });
  });
  m.def("powersgd_seed", &cdl::comm::powerSgdSeed, pyb::arg("seed"), pyb::arg("index"));
  // (kind, canonical spec, PowerSGD rank) of a scheme spec: kind "payload" or "powersgd".
  m.def("parse_scheme", [](const std::string& spec) {
    return cdl::py::badInput([&] {
      const cdl::comm::SchemeSpec s = cdl::comm::parseSchemeSpec(spec);
      const bool psgd = s.scheme == cdl::comm::SchemeId::kPowerSgd;
      return std::make_tuple(std::string(psgd ? "powersgd" : "payload"),
                             cdl::comm::formatSchemeSpec(s), s.rank);
    });
  });
  m.def("reference_powersgd", &cdl::py::referencePowerSgdTensors, pyb::arg("spec"),
        pyb::arg("shapes"), pyb::arg("steps"), pyb::arg("seed") = 0);
  m.def("candidate_grid", &cdl::py::candidateSpecs, pyb::arg("families"), pyb::arg("uniform"),
        pyb::arg("key"));
  m.def("measure_candidate", &cdl::py::measureSpec, pyb::arg("gradient"), pyb::arg("rows"),
        pyb::arg("cols"), pyb::arg("spec"), pyb::arg("ranks"), pyb::arg("is_default"));
  m.def("plan_rates", &cdl::py::planSpecs, pyb::arg("errors"), pyb::arg("bytes"), pyb::arg("valid"),
        pyb::arg("defaults"), pyb::arg("alpha"), pyb::arg("buckets"));
  m.def("load_model_file", &cdl::py::loadModel, pyb::arg("path"));
  m.def("encode_model_file", &cdl::py::saveModel, pyb::arg("meta"), pyb::arg("tensors"));
  m.def("inspect_model_file", [](const std::string& path) {
    return cdl::py::badInput([&] { return cdl::py::inspectModelFile(path); });
  });
}
