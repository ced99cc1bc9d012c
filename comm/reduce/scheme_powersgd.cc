// The PowerSGD scheme, tensor by tensor (Note [PowerSGD allreduce]), and its type (Note [Scheme
// registry]): ranks as its family's grid, measured by the rank-r approximation itself.
#include <ATen/ops/from_blob.h>
#include <ATen/ops/linalg_qr.h>
#include <ATen/ops/matmul.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "comm/reduce/powersgd.h"
#include "comm/reduce/scheme_type.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

constexpr int kPowerIterations = 2;

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
    const std::vector<float>& residual = stateField(in, t.name, "residual");
    requireStateFields(in, t.name, {"residual", "q"});
    PowerSgdSnapshot s;
    s.rows = t.rows;
    s.cols = t.cols;
    s.q = stateField(in, t.name, "q");
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

CandidateCost powerSgdCost(const float* g, int64_t rows, int64_t cols, int rank, int ranks) {
  const at::Tensor m = at::from_blob(const_cast<float*>(g), {rows, cols}, at::kFloat);
  std::vector<float> q0(static_cast<size_t>(rank * cols));
  for (int k = 0; k < rank; ++k) drawPowerSgdColumn(powerSgdSeed(0, 0), k, cols, &q0[k * cols]);
  at::Tensor q = at::from_blob(q0.data(), {rank, cols}, at::kFloat).t().contiguous();
  at::Tensor p;
  for (int it = 0; it < kPowerIterations; ++it) {
    p = std::get<0>(at::linalg_qr(at::matmul(m, q), "reduced"));
    q = at::matmul(m.t(), p);
  }
  const at::Tensor approx = at::matmul(p, q.t()).contiguous();
  return {true, l2Distance(g, approx.data_ptr<float>(), rows * cols),
          collectiveWireBytes(4.0 * double(rank) * double(rows + cols), ranks, true)};
}

class PowerSgdSchemeType final : public SchemeType {
 public:
  SchemeId id() const override { return SchemeId::kPowerSgd; }
  std::vector<std::string> families() const override { return {"powersgd"}; }
  std::string family(const SchemeSpec&) const override { return "powersgd"; }

  // Ranks {1, 2, 4, 8, 16, 32}.
  std::vector<SchemeSpec> candidates(const std::string& family, const SchemeSpec&) const override {
    std::vector<SchemeSpec> out;
    if (family != "powersgd") return out;
    SchemeSpec s;
    s.scheme = SchemeId::kPowerSgd;
    for (int r : {1, 2, 4, 8, 16, 32}) {
      s.rank = r;
      out.push_back(s);
    }
    return out;
  }

  bool applies(const SchemeSpec& spec, int64_t rows, int64_t cols) const override {
    return powerSgdCompresses(rows, cols, spec.rank);
  }

  // Where the rank does not compress the tensor, PowerSGD reduces it as plain fp32.
  CandidateCost measure(const float* g, int64_t rows, int64_t cols, const SchemeSpec& spec,
                        int ranks) const override {
    if (!applies(spec, rows, cols)) {
      return {true, 0.0, collectiveWireBytes(4.0 * double(rows * cols), ranks, true)};
    }
    return powerSgdCost(g, rows, cols, spec.rank, ranks);
  }

  // Q stays while the rank does, loses its last columns when the rank drops and gains the columns
  // a fresh draw of the tensor's seed would have when it rises.
  void adoptState(const SchemeSpec& from, const SchemeSpec& to, int64_t cols, uint64_t seed,
                  TensorState& state) const override {
    std::vector<float>& q = state["q"];  // empty unless `from` was PowerSGD and has stepped
    if (from.scheme != SchemeId::kPowerSgd || q.empty() || from.rank == to.rank) return;
    const size_t keep = static_cast<size_t>(std::min(from.rank, to.rank)) * cols;
    q.resize(keep);
    for (int k = from.rank; k < to.rank; ++k) {
      q.resize(q.size() + static_cast<size_t>(cols));
      drawPowerSgdColumn(seed, k, cols, q.data() + static_cast<size_t>(k) * cols);
    }
  }

  std::unique_ptr<ReductionScheme> make(const SchemeSpec& spec, std::vector<BucketTensor> tensors,
                                        const SchemeOptions& options) const override {
    return std::make_unique<PowerSgdScheme>(spec, std::move(tensors), options);
  }
};

}  // namespace

const SchemeType& powerSgdSchemeType() {
  static const PowerSgdSchemeType type;
  return type;
}

}  // namespace cdl::comm
