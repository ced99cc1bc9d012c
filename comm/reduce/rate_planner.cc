#include "comm/reduce/rate_planner.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

using Layers = std::vector<std::vector<RateCandidate>>;

constexpr int kMaxBuckets = 10000000;
constexpr size_t kMaxCandidates = 255;  // choices are uint8 with 255 left for "none"
constexpr int64_t kMaxTotalBytes = std::numeric_limits<int64_t>::max() / 2;
constexpr int64_t kNoPlan = std::numeric_limits<int64_t>::max();
constexpr uint8_t kNoChoice = 255;

void checkOptions(const RatePlannerOptions& options) {
  CDL_CHECK(options.alpha > 0 && std::isfinite(options.alpha),
            "rate planner: alpha must be positive and finite, got ", options.alpha);
  CDL_CHECK(options.buckets >= 1 && options.buckets <= kMaxBuckets,
            "rate planner: buckets must be in [1, ", kMaxBuckets, "], got ", options.buckets);
}

// Checks one layer's candidates and returns the largest valid size.
int64_t checkLayer(const std::vector<RateCandidate>& layer, int l, int dflt) {
  const int count = static_cast<int>(layer.size());
  CDL_CHECK(count > 0, "rate planner: layer ", l, " has no candidates");
  CDL_CHECK(layer.size() <= kMaxCandidates, "rate planner: layer ", l, " has ", count,
            " candidates, at most ", kMaxCandidates, " are supported");
  int64_t largest = 0;
  bool anyValid = false;
  for (int k = 0; k < count; ++k) {
    const RateCandidate& c = layer[k];
    if (!c.valid) continue;
    anyValid = true;
    CDL_CHECK(c.error >= 0 && std::isfinite(c.error), "rate planner: layer ", l, " candidate ", k,
              " has error ", c.error, ", it must be finite and >= 0");
    CDL_CHECK(c.bytes >= 0, "rate planner: layer ", l, " candidate ", k, " has bytes ", c.bytes,
              ", it must be >= 0");
    largest = std::max(largest, c.bytes);
  }
  CDL_CHECK(anyValid, "rate planner: layer ", l, " has no valid candidate");
  CDL_CHECK(dflt >= 0 && dflt < count, "rate planner: layer ", l, " default ", dflt,
            " is out of range [0, ", count, ")");
  CDL_CHECK(layer[dflt].valid, "rate planner: layer ", l, " default ", dflt, " is not valid");
  return largest;
}

void checkLayers(const Layers& layers, const std::vector<int>& defaults) {
  CDL_CHECK(layers.size() == defaults.size(), "rate planner: ", layers.size(), " layers but ",
            defaults.size(), " defaults");
  int64_t total = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const int64_t largest = checkLayer(layers[l], static_cast<int>(l), defaults[l]);
    CDL_CHECK(largest <= kMaxTotalBytes - total, "rate planner: the sizes of layers 0..", l,
              " could sum past INT64_MAX / 2");
    total += largest;
  }
}

// Real totals of a choice.
void fillTotals(const Layers& layers, const std::vector<int>& choice, double* error,
                int64_t* bytes) {
  *error = 0;
  *bytes = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    *error += layers[l][choice[l]].error;
    *bytes += layers[l][choice[l]].bytes;
  }
}

// e' of Note [Rate planner]; buckets + 1 marks a candidate that can never fit.
int64_t discretize(double error, double budget, int buckets) {
  const int64_t unusable = int64_t{buckets} + 1;
  if (error == 0) return 0;
  if (budget == 0) return unusable;
  const double scale = buckets / budget;
  const double e = std::ceil(error * scale);
  return e <= buckets ? static_cast<int64_t>(e) : unusable;
}

// The knapsack rows of Note [Rate planner]: prev is DP[l-1], cur is DP[l] being built.
struct DpRows {
  std::vector<int64_t> prevBytes, curBytes;
  std::vector<int32_t> prevError, curError;  // discrete error of the plan each entry holds
};

// Relaxes DP[l][b] for b >= e with candidate k (e' = e, size s). Candidates come in increasing k
// and only a strictly better (size, error) replaces an entry, so ties keep the smaller index.
void relax(DpRows& r, uint8_t* choiceRow, int buckets, int k, int32_t e, int64_t s) {
  for (int b = e; b <= buckets; ++b) {
    const int64_t before = r.prevBytes[b - e];
    if (before == kNoPlan) continue;
    const int64_t size = before + s;
    const int32_t error = r.prevError[b - e] + e;
    if (size < r.curBytes[b] || (size == r.curBytes[b] && error < r.curError[b])) {
      r.curBytes[b] = size;
      r.curError[b] = error;
      choiceRow[b] = static_cast<uint8_t>(k);
    }
  }
}

// Solves the knapsack and backtracks it; empty when no plan fits the capacity.
std::vector<int> solveKnapsack(const Layers& layers, double budget, int buckets) {
  const size_t width = static_cast<size_t>(buckets) + 1;
  std::vector<uint8_t> choices(layers.size() * width, kNoChoice);
  std::vector<std::vector<int32_t>> discrete(layers.size());
  DpRows r{std::vector<int64_t>(width, 0), std::vector<int64_t>(width),
           std::vector<int32_t>(width, 0), std::vector<int32_t>(width)};
  for (size_t l = 0; l < layers.size(); ++l) {
    std::fill(r.curBytes.begin(), r.curBytes.end(), kNoPlan);
    std::fill(r.curError.begin(), r.curError.end(), 0);
    for (size_t k = 0; k < layers[l].size(); ++k) {
      const RateCandidate& c = layers[l][k];
      const int64_t e = c.valid ? discretize(c.error, budget, buckets) : int64_t{buckets} + 1;
      discrete[l].push_back(static_cast<int32_t>(e));
      if (e > buckets) continue;
      relax(r, &choices[l * width], buckets, static_cast<int>(k), static_cast<int32_t>(e), c.bytes);
    }
    std::swap(r.prevBytes, r.curBytes);
    std::swap(r.prevError, r.curError);
  }
  if (r.prevBytes[buckets] == kNoPlan) return {};
  std::vector<int> choice(layers.size());
  int b = buckets;
  for (size_t l = layers.size(); l-- > 0;) {
    choice[l] = choices[l * width + static_cast<size_t>(b)];
    b -= discrete[l][choice[l]];
  }
  return choice;
}

// Per layer the valid candidate of least error (then fewer bytes, then smaller index).
std::vector<int> leastErrorChoice(const Layers& layers) {
  std::vector<int> choice;
  for (const auto& layer : layers) {
    int best = -1;
    for (int k = 0; k < static_cast<int>(layer.size()); ++k) {
      if (!layer[k].valid) continue;
      if (best < 0 || layer[k].error < layer[best].error ||
          (layer[k].error == layer[best].error && layer[k].bytes < layer[best].bytes)) {
        best = k;
      }
    }
    choice.push_back(best);
  }
  return choice;
}

}  // namespace

RatePlan planRates(const Layers& layers, const std::vector<int>& defaults,
                   const RatePlannerOptions& options) {
  checkOptions(options);
  checkLayers(layers, defaults);
  RatePlan plan;
  fillTotals(layers, defaults, &plan.defaultError, &plan.defaultBytes);
  CDL_CHECK(std::isfinite(plan.defaultError),
            "rate planner: the defaults' total error overflows a double");
  plan.budget = options.alpha * plan.defaultError;
  CDL_CHECK(std::isfinite(plan.budget), "rate planner: the budget alpha * ", plan.defaultError,
            " overflows a double");
  plan.choice = solveKnapsack(layers, plan.budget, options.buckets);
  plan.feasible = !plan.choice.empty() || layers.empty();
  if (plan.feasible) fillTotals(layers, plan.choice, &plan.error, &plan.bytes);
  if (options.alpha >= 1) {
    const bool defaultsWin = !plan.feasible || plan.defaultBytes < plan.bytes ||
                             (plan.defaultBytes == plan.bytes && plan.defaultError < plan.error);
    if (defaultsWin) {
      plan.choice = defaults;
      plan.error = plan.defaultError;
      plan.bytes = plan.defaultBytes;
      plan.feasible = true;
    }
  }
  if (!plan.feasible) {
    plan.choice = leastErrorChoice(layers);
    fillTotals(layers, plan.choice, &plan.error, &plan.bytes);
  }
  return plan;
}

}  // namespace cdl::comm
