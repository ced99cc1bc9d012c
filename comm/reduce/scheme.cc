#include "comm/reduce/scheme.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "comm/reduce/powersgd.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::comm {

namespace {

const std::vector<float>& field(const SchemeState& in, const std::string& tensor,
                                const std::string& name) {
  auto t = in.find(tensor);
  CDL_CHECK(t != in.end(), "reducer: the saved state lacks tensor '", tensor, "'");
  auto f = t->second.find(name);
  CDL_CHECK(f != t->second.end(), "reducer: the saved state of '", tensor, "' lacks its ", name);
  return f->second;
}

void requireFields(const SchemeState& in, const std::string& tensor,
                   std::initializer_list<const char*> names) {
  for (const auto& [name, values] : in.at(tensor)) {
    CDL_CHECK(std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; }),
              "reducer: the saved state of '", tensor, "' has an unknown field '", name,
              "' (saved by another reduction scheme?)");
  }
}

// Payload codecs through the compressed allreduce, one error-feedback residual per bucket.
class PayloadScheme : public ReductionScheme {
 public:
  PayloadScheme(const SchemeSpec& spec, std::vector<BucketTensor> tensors,
                const SchemeOptions& options)
      : spec_(spec),
        tensors_(std::move(tensors)),
        options_(options),
        codec_(makeCodec(spec.codec.codec)) {
    int64_t numel = 0;
    for (const BucketTensor& t : tensors_) numel = std::max(numel, t.offset + t.numel());
    numel_ = numel;
    if (options_.errorFeedback) residual_.assign(static_cast<size_t>(numel_), 0.0f);
  }

  const SchemeSpec& spec() const override { return spec_; }

  void reduce(Communicator& comm, float* data, int bucket, uint64_t step,
              AllreduceStats* stats) override {
    CompressedAllreduceOptions opt;
    opt.average = true;
    opt.residual = residual_.empty() ? nullptr : residual_.data();
    opt.timeoutSeconds = options_.timeoutSeconds;
    opt.roundingKey = kernels::roundingKey(options_.seed, step, static_cast<uint64_t>(bucket));
    compressedAllreduce(comm, *codec_, spec_.codec.rate, data, numel_, opt, stats);
  }

  void saveState(SchemeState* out) const override {
    for (const BucketTensor& t : tensors_) {
      (*out)[t.name]["residual"] =
          residual_.empty() ? std::vector<float>()
                            : std::vector<float>(residual_.begin() + t.offset,
                                                 residual_.begin() + t.offset + t.numel());
    }
  }

  void checkState(const SchemeState& in) const override {
    for (const BucketTensor& t : tensors_) {
      const std::vector<float>& values = field(in, t.name, "residual");
      requireFields(in, t.name, {"residual"});
      const size_t want = residual_.empty() ? 0 : static_cast<size_t>(t.numel());
      CDL_CHECK(values.size() == want, "reducer: saved error feedback of '", t.name, "' has ",
                values.size(), " values, expected ", want);
      for (size_t j = 0; j < values.size(); ++j) {
        CDL_CHECK(std::isfinite(values[j]), "reducer: saved error feedback of '", t.name,
                  "' holds ", values[j], " at element ", j);
      }
    }
  }

  void loadState(const SchemeState& in) override {
    for (const BucketTensor& t : tensors_) {
      const std::vector<float>& values = in.at(t.name).at("residual");
      std::copy(values.begin(), values.end(), residual_.begin() + t.offset);
    }
  }

 private:
  SchemeSpec spec_;
  std::vector<BucketTensor> tensors_;
  SchemeOptions options_;
  std::unique_ptr<Codec> codec_;
  int64_t numel_ = 0;
  std::vector<float> residual_;
};

// PowerSGD tensor by tensor, each with its own PowerSgdState.
class PowerSgdScheme : public ReductionScheme {
 public:
  PowerSgdScheme(const SchemeSpec& spec, std::vector<BucketTensor> tensors,
                 const SchemeOptions& options)
      : spec_(spec), tensors_(std::move(tensors)), options_(options) {
    for (const BucketTensor& t : tensors_) {
      states_.push_back(std::make_unique<PowerSgdState>(t.name, t.rows, t.cols));
    }
  }

  const SchemeSpec& spec() const override { return spec_; }

  void reduce(Communicator& comm, float* data, int, uint64_t, AllreduceStats* stats) override {
    *stats = AllreduceStats{};
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const BucketTensor& t = tensors_[i];
      PowerSgdOptions opt;
      opt.rank = spec_.rank;
      // The same stream on every rank, a different one for every tensor.
      opt.seed = powerSgdSeed(options_.seed, t.index);
      opt.average = true;
      opt.errorFeedback = options_.errorFeedback;
      opt.timeoutSeconds = options_.timeoutSeconds;
      AllreduceStats one;
      powerSgdAllreduce(comm, *states_[i], data + t.offset, t.rows, t.cols, opt, &one);
      stats->wireBytes += one.wireBytes;
      stats->fp32Bytes += one.fp32Bytes;
      stats->encodeSeconds += one.encodeSeconds;
      stats->commSeconds += one.commSeconds;
      stats->decodeSeconds += one.decodeSeconds;
    }
  }

  void saveState(SchemeState* out) const override {
    for (size_t i = 0; i < tensors_.size(); ++i) {
      std::vector<float> residual = states_[i]->residual();
      if (options_.errorFeedback && residual.empty()) residual.assign(tensors_[i].numel(), 0.0f);
      TensorState& s = (*out)[tensors_[i].name];
      s["residual"] = std::move(residual);
      s["q"] = states_[i]->q();
    }
  }

  void checkState(const SchemeState& in) const override {
    for (const BucketTensor& t : tensors_) restored(in, t);
  }

  void loadState(const SchemeState& in) override {
    for (size_t i = 0; i < tensors_.size(); ++i) states_[i] = restored(in, tensors_[i]);
  }

 private:
  // A fresh state for t holding in's; validates the shape, rank and values, naming the tensor.
  std::unique_ptr<PowerSgdState> restored(const SchemeState& in, const BucketTensor& t) const {
    const std::vector<float>& residual = field(in, t.name, "residual");
    requireFields(in, t.name, {"residual", "q"});
    PowerSgdSnapshot s;
    s.rows = t.rows;
    s.cols = t.cols;
    s.q = field(in, t.name, "q");
    s.rank = s.q.empty() ? 0 : spec_.rank;
    CDL_CHECK(residual.empty() || residual.size() == static_cast<size_t>(t.numel()),
              "reducer: saved error feedback of '", t.name, "' has ", residual.size(),
              " values, expected ", t.numel());
    // A residual of zeros is what a state holds before its first step.
    const bool zero = std::all_of(residual.begin(), residual.end(), [](float v) { return v == 0; });
    if (!zero || !s.q.empty()) s.residual = residual;
    auto state = std::make_unique<PowerSgdState>(t.name, t.rows, t.cols);
    state->restore(s);
    return state;
  }

  SchemeSpec spec_;
  std::vector<BucketTensor> tensors_;
  SchemeOptions options_;
  std::vector<std::unique_ptr<PowerSgdState>> states_;
};

}  // namespace

uint64_t powerSgdSeed(uint64_t seed, int index) {
  return kernels::roundingKey(seed, 0, static_cast<uint64_t>(index));
}

void adaptSchemeState(const SchemeSpec& from, const SchemeSpec& to, int64_t cols, uint64_t seed,
                      TensorState& state) {
  if (to.scheme != SchemeId::kPowerSgd) {
    state.erase("q");
    return;
  }
  std::vector<float>& q = state["q"];  // empty unless `from` was PowerSGD and has stepped
  if (from.scheme != SchemeId::kPowerSgd || q.empty() || from.rank == to.rank) return;
  const size_t keep = static_cast<size_t>(std::min(from.rank, to.rank)) * cols;
  q.resize(keep);
  for (int k = from.rank; k < to.rank; ++k) {
    q.resize(q.size() + static_cast<size_t>(cols));
    drawPowerSgdColumn(seed, k, cols, q.data() + static_cast<size_t>(k) * cols);
  }
}

std::unique_ptr<ReductionScheme> makeScheme(const SchemeSpec& spec,
                                            std::vector<BucketTensor> tensors,
                                            const SchemeOptions& options) {
  if (spec.scheme == SchemeId::kPowerSgd) {
    return std::make_unique<PowerSgdScheme>(spec, std::move(tensors), options);
  }
  return std::make_unique<PayloadScheme>(spec, std::move(tensors), options);
}

}  // namespace cdl::comm
