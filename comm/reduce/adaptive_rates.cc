#include "comm/reduce/adaptive_rates.h"

#include <ATen/ops/from_blob.h>
#include <ATen/ops/linalg_qr.h>
#include <ATen/ops/matmul.h>

#include <chrono>
#include <cmath>
#include <set>

#include "comm/codec/codec.h"
#include "comm/reduce/powersgd.h"
#include "kernels/base/bytes.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

// Stochastic rounding of the measurements: any fixed stream, the same on every rank.
constexpr uint64_t kMeasureKey = 0x4c47726563ull;  // "LGrec"
constexpr int kPowerIterations = 2;

// The wire bytes per rank of a collective moving `payload` bytes per rank: reduce-scatter plus
// allgather (each 1 - 1/W of it), or an allgather to the W - 1 peers.
int64_t wireBytes(double payload, int ranks, bool summable) {
  const double w = std::max(ranks, 2);
  return static_cast<int64_t>(
      std::llround(summable ? 2.0 * (w - 1) / w * payload : (w - 1) * payload));
}

double distance(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return std::sqrt(s);
}

bool applies(const SchemeSpec& spec, int64_t rows, int64_t cols) {
  if (spec.scheme == SchemeId::kPowerSgd) return powerSgdCompresses(rows, cols, spec.rank);
  if (spec.codec.codec == CodecId::kTopk) {
    return spec.codec.rate.density * double(rows * cols) >= 1.0;
  }
  return true;
}

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
  return {true, distance(g, approx.data_ptr<float>(), rows * cols),
          wireBytes(4.0 * double(rank) * double(rows + cols), ranks, true)};
}

}  // namespace

std::string familyOf(const SchemeSpec& spec) {
  if (spec.scheme == SchemeId::kPowerSgd) return "powersgd";
  return codecName(spec.codec.codec);
}

std::vector<SchemeSpec> candidateGrid(const std::vector<std::string>& families,
                                      const SchemeSpec& uniform, const std::string& key) {
  CDL_CHECK(!families.empty(), key, ": no families to choose among");
  std::vector<SchemeSpec> out;
  for (const std::string& f : families) {
    SchemeSpec s;
    if (f == "qsgd") {
      s.codec.codec = CodecId::kQsgd;
      s.codec.rate = uniform.codec.codec == CodecId::kQsgd ? uniform.codec.rate : LayerRate{};
      for (int bits = 2; bits <= 8; ++bits) {
        for (int64_t bucket : {128, 512, 1024, 4096}) {
          for (kernels::Rounding r :
               {kernels::Rounding::kStochastic, kernels::Rounding::kNearest}) {
            s.codec.rate.bits = bits;
            s.codec.rate.bucket = bucket;
            s.codec.rate.rounding = r;
            out.push_back(s);
          }
        }
      }
    } else if (f == "topk") {
      s.codec.codec = CodecId::kTopk;
      for (int i = 0; i < 7; ++i) {
        s.codec.rate.density = 0.001 * std::pow(100.0, i / 6.0);
        out.push_back(s);
      }
    } else if (f == "powersgd") {
      s.scheme = SchemeId::kPowerSgd;
      for (int r : {1, 2, 4, 8, 16, 32}) {
        s.rank = r;
        out.push_back(s);
      }
    } else {
      CDL_THROW(key, ": unknown family '", f, "' (qsgd, topk, powersgd)");
    }
  }
  return out;
}

CandidateCost measureCandidate(const float* g, int64_t rows, int64_t cols, const SchemeSpec& spec,
                               int ranks, bool isDefault) {
  const int64_t n = rows * cols;
  const bool fits = applies(spec, rows, cols);
  if (!fits && !isDefault) return {false, 0.0, 0};
  if (spec.scheme == SchemeId::kPowerSgd) {
    // The uniform scheme still reduces a layer it does not fit: PowerSGD as plain fp32 (top-k
    // keeps at least one element, measured below).
    if (!fits) return {true, 0.0, wireBytes(4.0 * double(n), ranks, true)};
    return powerSgdCost(g, rows, cols, spec.rank, ranks);
  }
  const std::unique_ptr<Codec> codec = makeCodec(spec.codec.codec);
  if (codec->lossless()) return {true, 0.0, wireBytes(4.0 * double(n), ranks, true)};
  const Bytes payload = codec->encode(g, n, spec.codec.rate, kMeasureKey);
  std::vector<float> back(static_cast<size_t>(n));
  codec->decode(payload, back.data(), n);
  return {true, distance(g, back.data(), n),
          wireBytes(double(payload.size()), ranks, codec->summable())};
}

AdaptiveRates::AdaptiveRates(Reducer& reducer, Communicator& comm, AdaptiveOptions options)
    : reducer_(reducer), comm_(comm), options_(std::move(options)) {
  const std::vector<Reducer::Plannable> layers = reducer_.plannable();
  // Every layer's default: the scheme the config gives it (comm.codec or an override).
  std::vector<std::string> defaults;
  for (const auto& l : layers) defaults.push_back(formatSchemeSpec(reducer_.schemeOf(l.name)));
  auto fitsSome = [&](const SchemeSpec& c) {
    const std::string spec = formatSchemeSpec(c);
    for (size_t l = 0; l < layers.size(); ++l) {
      if (defaults[l] == spec || applies(c, layers[l].rows, layers[l].cols)) return true;
    }
    return false;
  };
  std::vector<SchemeSpec> kept;
  std::map<std::string, int> index;
  auto keep = [&](const SchemeSpec& c) {
    if (index.emplace(formatSchemeSpec(c), static_cast<int>(kept.size())).second) kept.push_back(c);
  };
  for (const SchemeSpec& c : options_.candidates) {
    CDL_CHECK(!options_.named || fitsSome(c), "comm.adaptive.candidates: '", formatSchemeSpec(c),
              "' applies to no layer of this model");
    if (fitsSome(c)) keep(c);
  }
  for (const auto& l : layers) keep(reducer_.schemeOf(l.name));
  CDL_CHECK(kept.size() <= 255, "comm.adaptive.candidates: ", kept.size(),
            " candidates, at most 255");
  options_.candidates = std::move(kept);
  for (const std::string& d : defaults) defaults_.push_back(index.at(d));
  reducer_.setCapture(false);
  afterStep(0);
}

bool AdaptiveRates::planDue(uint64_t steps) const {
  const int64_t s = static_cast<int64_t>(steps);
  return s >= options_.warmupSteps && s > 0 &&
         (s - options_.warmupSteps) % options_.everySteps == 0;
}

bool AdaptiveRates::measuring(uint64_t steps) const {
  for (int64_t k = 1; k <= options_.window; ++k) {
    if (planDue(steps + static_cast<uint64_t>(k))) return true;
  }
  return false;
}

std::optional<PlanReport> AdaptiveRates::afterStep(uint64_t steps) {
  std::optional<PlanReport> report;
  if (steps > 0) {
    sentSincePlan_ += reducer_.lastStats().wireBytes;
    ++stepsSincePlan_;
  }
  if (planDue(steps) && reducer_.capturedSteps() > 0) {
    report = replan(steps);
    report->actualBytes =
        static_cast<int64_t>(sentSincePlan_ / std::max<uint64_t>(1, stepsSincePlan_));
    sentSincePlan_ = stepsSincePlan_ = 0;
  }
  reducer_.setCapture(measuring(steps));
  return report;
}

std::vector<std::vector<RateCandidate>> AdaptiveRates::measure(
    std::vector<Reducer::Plannable>& layers) {
  const auto& sums = reducer_.captured();
  const double scale = 1.0 / double(reducer_.capturedSteps());
  const size_t k = options_.candidates.size();
  std::vector<float> costs(layers.size() * k * 2, 0.0f);
  std::vector<std::vector<RateCandidate>> out(layers.size(), std::vector<RateCandidate>(k));
  for (size_t l = 0; l < layers.size(); ++l) {
    auto it = sums.find(layers[l].name);
    std::vector<float> g =
        it == sums.end() ? std::vector<float>(layers[l].rows * layers[l].cols) : it->second;
    for (float& v : g) v = static_cast<float>(v * scale);
    for (size_t c = 0; c < k; ++c) {
      const CandidateCost cost =
          measureCandidate(g.data(), layers[l].rows, layers[l].cols, options_.candidates[c],
                           comm_.size(), static_cast<int>(c) == defaults_[l]);
      out[l][c].valid = cost.valid;
      costs[2 * (l * k + c)] = static_cast<float>(cost.error);
      costs[2 * (l * k + c) + 1] = static_cast<float>(cost.bytes);
    }
  }
  // The ranks' mean costs; validity depends on shapes only, so it is the same everywhere.
  comm_.allreduce(costs.data(), static_cast<int64_t>(costs.size()))->wait();
  for (size_t l = 0; l < layers.size(); ++l) {
    for (size_t c = 0; c < k; ++c) {
      out[l][c].error = costs[2 * (l * k + c)] / comm_.size();
      out[l][c].bytes = std::llround(costs[2 * (l * k + c) + 1] / comm_.size());
    }
  }
  return out;
}

PlanReport AdaptiveRates::replan(uint64_t steps) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Reducer::Plannable> layers = reducer_.plannable();
  const auto costs = measure(layers);
  const RatePlan plan = planRates(costs, defaults_, {options_.alpha, options_.buckets});
  // Rank 0's plan for everyone: one byte per layer.
  Bytes choice(plan.choice.begin(), plan.choice.end());
  comm_.broadcast(&choice, 0)->wait();
  CDL_CHECK(choice.size() == layers.size(), "adaptive rates: rank 0 planned ", choice.size(),
            " layers, this rank has ", layers.size());
  PlanReport r;
  r.step = steps;
  r.feasible = plan.feasible;
  r.budget = plan.budget;
  std::map<std::string, SchemeSpec> schemes;
  for (size_t l = 0; l < layers.size(); ++l) {
    const RateCandidate& got = costs[l][choice[l]];
    const RateCandidate& uni = costs[l][defaults_[l]];
    schemes[layers[l].name] = options_.candidates[choice[l]];
    r.layers.push_back({layers[l].name, formatSchemeSpec(options_.candidates[choice[l]]), got.error,
                        got.bytes, uni.error, uni.bytes});
    r.error += got.error;
    r.bytes += got.bytes;
    r.uniformError += uni.error;
    r.uniformBytes += uni.bytes;
  }
  reducer_.setSchemes(schemes);
  reducer_.setCaptured({}, 0);  // used up; checkpoints need not carry it
  plan_.clear();
  for (const auto& [name, spec] : schemes) plan_[name] = formatSchemeSpec(spec);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

void AdaptiveRates::restore(const std::map<std::string, std::string>& plan, uint64_t steps,
                            std::pair<uint64_t, uint64_t> since) {
  sentSincePlan_ = since.first;
  stepsSincePlan_ = since.second;
  std::map<std::string, SchemeSpec> schemes;
  for (const auto& [name, spec] : plan) schemes[name] = parseSchemeSpec(spec);
  if (!schemes.empty()) reducer_.setSchemes(schemes);
  plan_ = plan;
  reducer_.setCapture(measuring(steps));
}

}  // namespace cdl::comm
