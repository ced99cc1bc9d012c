#include "comm/reduce/adaptive_rates.h"

#include <chrono>
#include <cmath>
#include <set>

#include "comm/reduce/scheme_type.h"
#include "kernels/base/bytes.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

bool applies(const SchemeSpec& spec, int64_t rows, int64_t cols) {
  return schemeType(spec.scheme).applies(spec, rows, cols);
}

}  // namespace

std::string familyOf(const SchemeSpec& spec) { return schemeType(spec.scheme).family(spec); }

std::vector<SchemeSpec> candidateGrid(const std::vector<std::string>& families,
                                      const SchemeSpec& uniform, const std::string& key) {
  CDL_CHECK(!families.empty(), key, ": no families to choose among");
  std::vector<SchemeSpec> out;
  for (const std::string& f : families) {
    const SchemeType* served = nullptr;
    std::string known;
    for (const SchemeType* t : schemeTypes()) {
      for (const std::string& g : t->families()) {
        known += (known.empty() ? "" : ", ") + g;
        if (g == f) served = t;
      }
    }
    CDL_CHECK(served != nullptr, key, ": unknown family '", f, "' (", known, ")");
    for (const SchemeSpec& s : served->candidates(f, uniform)) out.push_back(s);
  }
  return out;
}

CandidateCost measureCandidate(const float* g, int64_t rows, int64_t cols, const SchemeSpec& spec,
                               int ranks, bool isDefault) {
  if (!applies(spec, rows, cols) && !isDefault) return {false, 0.0, 0};
  return schemeType(spec.scheme).measure(g, rows, cols, spec, ranks);
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
