#include "python/csrc/plain.h"

#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "comm/reduce/compressed_allreduce.h"
#include "comm/reduce/scheme.h"
#include "comm/reduce/scheme_spec.h"
#include "comm/transport/communicator.h"
#include "comm/transport/thread_ranks.h"
#include "core/model_file/model_file.h"
#include "core/model_file/model_report.h"
#include "kernels/base/error.h"

namespace cdl::py {

comm::CodecSpec codecSpec(const std::string& spec) { return comm::parseCodecSpec(spec); }

std::vector<Floats> referenceAllreduce(const std::string& spec, std::vector<Floats> inputs,
                                       std::vector<Floats>* residuals, uint64_t roundingKey,
                                       bool average, int64_t segmentBytes) {
  const int size = static_cast<int>(inputs.size());
  CDL_CHECK(size >= 1, "a reference allreduce needs one input per rank, got none");
  CDL_CHECK(residuals->empty() || static_cast<int>(residuals->size()) == size,
            "a reference allreduce needs one residual per rank or none, got ", residuals->size());
  for (int r = 0; r < size; ++r) {
    CDL_CHECK(inputs[r].size() == inputs[0].size() &&
                  (residuals->empty() || (*residuals)[r].size() == inputs[r].size()),
              "rank ", r, "'s input or residual differs in size from rank 0's input");
  }
  const comm::CodecSpec s = comm::parseCodecSpec(spec);
  const std::unique_ptr<comm::Codec> codec = comm::makeCodec(s.codec);
  auto group = comm::makeLocalGroup(size);
  comm::onThreadRanks(size, [&](int r) {
    comm::CompressedAllreduceOptions opt;
    opt.average = average;
    opt.residual = residuals->empty() ? nullptr : (*residuals)[r].data();
    opt.roundingKey = roundingKey;
    opt.segmentBytes = segmentBytes;
    Floats& x = inputs[r];
    comm::compressedAllreduce(*group[r], *codec, s.rate, x.data(), static_cast<int64_t>(x.size()),
                              opt);
  });
  return inputs;
}

namespace {

// Rank r's scheme reduces its bucket of every step in order.
void powerSgdRank(comm::Communicator& comm, const comm::SchemeSpec& spec,
                  const std::vector<comm::BucketTensor>& tensors, uint64_t seed,
                  std::vector<std::vector<Floats>>& steps, int r) {
  comm::SchemeOptions opt;
  opt.seed = seed;
  const std::unique_ptr<comm::ReductionScheme> scheme = comm::makeScheme(spec, tensors, opt);
  for (size_t s = 0; s < steps.size(); ++s) {
    comm::AllreduceStats stats;
    scheme->reduce(comm, steps[s][r].data(), 0, s, &stats);
  }
}

}  // namespace

std::vector<std::vector<Floats>> referencePowerSgd(const std::string& spec,
                                                   const std::vector<Shape2>& shapes,
                                                   std::vector<std::vector<Floats>> steps,
                                                   uint64_t seed) {
  const comm::SchemeSpec s = comm::parseSchemeSpec(spec);
  CDL_CHECK(s.scheme == comm::SchemeId::kPowerSgd,
            "a reference PowerSGD run needs a powersgd "
            "spec, got '",
            spec, "'");
  std::vector<comm::BucketTensor> tensors;
  int64_t offset = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    CDL_CHECK(shapes[i].first >= 0 && shapes[i].second >= 0, "tensor ", i, ": bad shape");
    tensors.push_back(
        {"t" + std::to_string(i), static_cast<int>(i), offset, shapes[i].first, shapes[i].second});
    offset += shapes[i].first * shapes[i].second;
  }
  CDL_CHECK(!steps.empty() && !steps[0].empty(),
            "a reference PowerSGD run needs a step and a rank");
  const int size = static_cast<int>(steps[0].size());
  for (size_t k = 0; k < steps.size(); ++k) {
    CDL_CHECK(static_cast<int>(steps[k].size()) == size, "step ", k, " has ", steps[k].size(),
              " ranks, step 0 has ", size);
    for (const Floats& x : steps[k]) {
      CDL_CHECK(static_cast<int64_t>(x.size()) == offset, "step ", k, ": a bucket of ", x.size(),
                " floats, the shapes hold ", offset);
    }
  }
  auto group = comm::makeLocalGroup(size);
  comm::onThreadRanks(size, [&](int r) { powerSgdRank(*group[r], s, tensors, seed, steps, r); });
  return steps;
}

namespace {

core::ModelFile readFile(const std::string& path) {
  const std::string bytes = readWholeFile(path, "model file");
  try {
    return core::decodeModelFile(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  } catch (const Error& e) {
    CDL_THROW("model file ", path, ": ", errorBody(e.what()));
  }
}

}  // namespace

std::vector<uint8_t> encodeModel(const std::string& meta, const std::vector<SavedTensor>& tensors) {
  core::ModelFile f;
  f.meta = meta;
  for (const SavedTensor& s : tensors) {
    core::ModelTensor t;
    t.name = s.name;
    t.shape = s.shape;
    if (s.bits > 0) {
      CDL_CHECK(s.bits <= 8, "tensor '", s.name, "': ", s.bits, " bits, must be 1..8");
      t.kind = core::TensorKind::kQuantized;
      t.coder = core::TensorCoder::kRans;
      t.bits = s.bits;
      t.isSigned = true;
      t.step = s.step;
      const int64_t lo = t.lowestLevel(), hi = -lo - 1;
      for (int64_t l : s.levels) {
        CDL_CHECK(l >= lo && l <= hi, "tensor '", s.name, "': level ", l, " outside ", lo, "..", hi,
                  " of ", s.bits, " bits");
        t.symbols.push_back(static_cast<uint8_t>(l - lo));
      }
    } else if (s.isInt64) {
      t.kind = core::TensorKind::kInt64;
      t.coder = core::TensorCoder::kInt64;
      t.ints = s.ints;
    } else {
      t.values = s.values;
    }
    f.tensors.push_back(std::move(t));
  }
  return core::encodeModelFile(f);
}

std::vector<LoadedTensor> loadModelFile(const std::string& path) {
  const core::ModelFile f = readFile(path);
  std::vector<LoadedTensor> out;
  for (const core::ModelTensor& t : f.tensors) {
    LoadedTensor l;
    l.name = t.name;
    l.shape = t.shape;
    if (t.kind == core::TensorKind::kInt64) {
      l.isInt64 = true;
      l.ints = t.ints;
    } else if (t.kind == core::TensorKind::kFloat) {
      l.values = t.values;
    } else {
      l.values.resize(static_cast<size_t>(t.numel()));
      core::dequantize(t, l.values.data());
    }
    out.push_back(std::move(l));
  }
  return out;
}

std::string inspectModelFile(const std::string& path) {
  const core::ModelFile f = readFile(path);
  nlohmann::json j = core::reportJson(core::reportModel(f));
  j["meta"] = nlohmann::json::parse(f.meta, nullptr, /*allow_exceptions=*/false);
  return j.dump();
}

}  // namespace cdl::py
