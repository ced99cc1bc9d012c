#include "comm/reduce/adaptive_rates.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "comm/reduce/scheme_type.h"
#include "kernels/base/bytes.h"
#include "kernels/base/clock.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

bool applies(const SchemeSpec& spec, int64_t rows, int64_t cols) {
  return schemeType(spec.scheme).applies(spec, rows, cols);
}

// Note [Time budget]: the seconds of an allgather of `bytes` from every rank, the best of two.
double allgatherSeconds(Communicator& comm, size_t bytes) {
  const Bytes send(bytes, 0);
  Bytes recv;
  std::vector<size_t> sizes;
  double best = std::numeric_limits<double>::infinity();
  for (int k = 0; k < 2; ++k) {
    const Clock::time_point t0 = Clock::now();
    comm.allgatherv(send, &recv, &sizes)->wait();
    best = std::min(best, secondsSince(t0));
  }
  return best;
}

// The link rate, probed: what each rank sends in an allgather of kProbeBytes more than in one of
// a single byte, over the extra seconds it takes (latency cancels out).
double probeLinkRate(Communicator& comm) {
  constexpr size_t kProbeBytes = size_t{256} << 10;  // beyond a shaper's burst
  const double small = allgatherSeconds(comm, 1), large = allgatherSeconds(comm, kProbeBytes);
  const double sent = static_cast<double>(kProbeBytes - 1) * (comm.size() - 1);
  return large > small ? sent / (large - small) : std::numeric_limits<double>::infinity();
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

std::optional<PlanReport> AdaptiveRates::afterStep(uint64_t steps, const StepTiming& timing) {
  std::optional<PlanReport> report;
  if (steps > 0) {
    const ReducerStepStats& st = reducer_.lastStats();
    sentSincePlan_ += st.wireBytes;
    ++stepsSincePlan_;
    if (timing.step > 0) {
      ++timed_.steps;
      timed_.compute += timing.compute;
      timed_.exposed += timing.exposed;
      timed_.step += timing.step;
      timed_.busy += st.encodeSeconds + st.commSeconds + st.decodeSeconds;
    }
  }
  if (planDue(steps) && reducer_.capturedSteps() > 0) {
    report = replan(steps);
    report->actualBytes =
        static_cast<int64_t>(sentSincePlan_ / std::max<uint64_t>(1, stepsSincePlan_));
    if (timed_.steps > 0) {
      report->actualStepSeconds = timed_.step / static_cast<double>(timed_.steps);
      report->actualExposedSeconds = timed_.exposed / static_cast<double>(timed_.steps);
    }
    sentSincePlan_ = stepsSincePlan_ = 0;
    timed_ = {};
  }
  reducer_.setCapture(measuring(steps));
  return report;
}

std::vector<std::vector<RateCandidate>> AdaptiveRates::measure(
    std::vector<Reducer::Plannable>& layers, Timing* timing) {
  const auto& sums = reducer_.captured();
  const double scale = 1.0 / double(reducer_.capturedSteps());
  const size_t k = options_.candidates.size();
  // Per candidate: error, bytes, codec seconds; then this rank's compute, exposed and busy seconds
  // per step, whether it timed any step, and its probed link rate and whether it probed one.
  constexpr size_t kFields = 3, kTimes = 6;
  std::vector<float> costs(layers.size() * k * kFields + kTimes, 0.0f);
  std::vector<std::vector<RateCandidate>> out(layers.size(), std::vector<RateCandidate>(k));
  for (size_t l = 0; l < layers.size(); ++l) {
    auto it = sums.find(layers[l].name);
    std::vector<float> g =
        it == sums.end() ? std::vector<float>(layers[l].rows * layers[l].cols) : it->second;
    for (float& v : g) v = static_cast<float>(v * scale);
    for (size_t c = 0; c < k; ++c) {
      const Clock::time_point t0 = Clock::now();
      const CandidateCost cost =
          measureCandidate(g.data(), layers[l].rows, layers[l].cols, options_.candidates[c],
                           comm_.size(), static_cast<int>(c) == defaults_[l]);
      float* at = &costs[kFields * (l * k + c)];
      out[l][c].valid = cost.valid;
      at[0] = static_cast<float>(cost.error);
      at[1] = static_cast<float>(cost.bytes);
      at[2] = static_cast<float>(secondsSince(t0));
    }
  }
  float* mine = &costs[costs.size() - kTimes];
  if (timed_.steps > 0) {
    const double n = static_cast<double>(timed_.steps);
    mine[0] = static_cast<float>(timed_.compute / n);
    mine[1] = static_cast<float>(timed_.exposed / n);
    mine[2] = static_cast<float>(timed_.busy / n);
    mine[3] = 1.0f;
  }
  if (options_.budget == AdaptiveOptions::Budget::kTime && options_.linkBytesPerSecond <= 0 &&
      comm_.size() > 1) {
    const double rate = probeLinkRate(comm_);
    if (std::isfinite(rate)) {
      mine[4] = static_cast<float>(rate);
      mine[5] = 1.0f;
    }
  }
  // The ranks' mean costs; validity depends on shapes only, so it is the same everywhere.
  comm_.allreduce(costs.data(), static_cast<int64_t>(costs.size()))->wait();
  for (size_t l = 0; l < layers.size(); ++l) {
    for (size_t c = 0; c < k; ++c) {
      const float* at = &costs[kFields * (l * k + c)];
      out[l][c].error = at[0] / comm_.size();
      out[l][c].bytes = std::llround(at[1] / comm_.size());
      out[l][c].seconds = at[2] / comm_.size();
    }
  }
  const float* all = &costs[costs.size() - kTimes];
  if (all[3] > 0) {
    timing->compute = all[0] / all[3];
    timing->exposed = all[1] / all[3];
    timing->busy = all[2] / all[3];
  }
  // The ranks' mean probed rate; none probed (too fast to tell): infinite.
  timing->linkBytesPerSecond =
      all[5] > 0 ? all[4] / all[5] : std::numeric_limits<double>::infinity();
  return out;
}

RatePlan AdaptiveRates::plan(std::vector<std::vector<RateCandidate>>& costs, const Timing& timing,
                             PlanReport* report) const {
  if (options_.budget == AdaptiveOptions::Budget::kTime && timing.compute > 0) {
    const double rate =
        options_.linkBytesPerSecond > 0 ? options_.linkBytesPerSecond : timing.linkBytesPerSecond;
    for (auto& layer : costs) {
      for (RateCandidate& c : layer) c.seconds += static_cast<double>(c.bytes) / rate;
    }
    // What the current plan's communication hid behind the step's compute, measured; a plan
    // may take that much and the exposed share the overlap leaves.
    const double hidden = std::max(0.0, timing.busy - timing.exposed);
    report->budgetKind = "time";
    report->linkBytesPerSecond = rate;
    report->computeSeconds = timing.compute;
    report->hiddenSeconds = hidden;
    return planRatesForTime(costs, defaults_, hidden + (1.0 - options_.overlap) * timing.compute,
                            options_.buckets);
  }
  if (options_.budget == AdaptiveOptions::Budget::kTime) {
    report->budgetKind = "error (no timed steps)";
  }
  return planRates(costs, defaults_, {options_.alpha, options_.buckets});
}

PlanReport AdaptiveRates::replan(uint64_t steps) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Reducer::Plannable> layers = reducer_.plannable();
  Timing timing;
  auto costs = measure(layers, &timing);
  PlanReport r;
  const RatePlan planned = plan(costs, timing, &r);
  // Rank 0's plan for everyone: one byte per layer.
  Bytes choice(planned.choice.begin(), planned.choice.end());
  comm_.broadcast(&choice, 0)->wait();
  CDL_CHECK(choice.size() == layers.size(), "adaptive rates: rank 0 planned ", choice.size(),
            " layers, this rank has ", layers.size());
  r.step = steps;
  r.feasible = planned.feasible;
  r.budget = planned.budget;
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
    if (r.budgetKind == "time") {
      r.predictedSeconds += got.seconds;
      r.uniformPredictedSeconds += uni.seconds;
    }
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
