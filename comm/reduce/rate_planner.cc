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
void fillTotals(const Layers& layers, const std::vector<int>& choice, RatePlan* plan) {
  plan->error = 0;
  plan->bytes = 0;
  plan->seconds = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    plan->error += layers[l][choice[l]].error;
    plan->bytes += layers[l][choice[l]].bytes;
    plan->seconds += layers[l][choice[l]].seconds;
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

// One candidate of the knapsack: its weight (what the budget bounds: error, or seconds) and its
// value (what the plan minimizes: bytes, or error).
template <typename Value>
struct Item {
  double weight = 0;
  Value value = 0;
  bool valid = true;
};
template <typename Value>
using Items = std::vector<std::vector<Item<Value>>>;

template <typename Value>
constexpr Value kNoValue = std::numeric_limits<Value>::max();

// The knapsack rows of Note [Rate planner]: prev is DP[l-1], cur is DP[l] being built.
template <typename Value>
struct DpRows {
  std::vector<Value> prevValue, curValue;
  std::vector<int32_t> prevWeight, curWeight;  // discrete weight of the plan each entry holds
};

// Relaxes DP[l][b] for b >= e with candidate k (discrete weight e, value v). Candidates come in
// increasing k and only a strictly better (value, weight) replaces an entry, so ties keep the
// smaller index.
template <typename Value>
void relax(DpRows<Value>& r, uint8_t* choiceRow, int buckets, int k, int32_t e, Value v) {
  for (int b = e; b <= buckets; ++b) {
    const Value before = r.prevValue[b - e];
    if (before == kNoValue<Value>) continue;
    const Value value = before + v;
    const int32_t weight = r.prevWeight[b - e] + e;
    if (value < r.curValue[b] || (value == r.curValue[b] && weight < r.curWeight[b])) {
      r.curValue[b] = value;
      r.curWeight[b] = weight;
      choiceRow[b] = static_cast<uint8_t>(k);
    }
  }
}

// Solves the knapsack (least total value within the discretized budget) and backtracks it; empty
// when no plan fits the capacity.
template <typename Value>
std::vector<int> solveKnapsack(const Items<Value>& layers, double budget, int buckets) {
  const size_t width = static_cast<size_t>(buckets) + 1;
  std::vector<uint8_t> choices(layers.size() * width, kNoChoice);
  std::vector<std::vector<int32_t>> discrete(layers.size());
  DpRows<Value> r{std::vector<Value>(width, 0), std::vector<Value>(width),
                  std::vector<int32_t>(width, 0), std::vector<int32_t>(width)};
  for (size_t l = 0; l < layers.size(); ++l) {
    std::fill(r.curValue.begin(), r.curValue.end(), kNoValue<Value>);
    std::fill(r.curWeight.begin(), r.curWeight.end(), 0);
    for (size_t k = 0; k < layers[l].size(); ++k) {
      const Item<Value>& c = layers[l][k];
      const int64_t e = c.valid ? discretize(c.weight, budget, buckets) : int64_t{buckets} + 1;
      discrete[l].push_back(static_cast<int32_t>(e));
      if (e > buckets) continue;
      relax(r, &choices[l * width], buckets, static_cast<int>(k), static_cast<int32_t>(e), c.value);
    }
    std::swap(r.prevValue, r.curValue);
    std::swap(r.prevWeight, r.curWeight);
  }
  if (r.prevValue[buckets] == kNoValue<Value>) return {};
  std::vector<int> choice(layers.size());
  int b = buckets;
  for (size_t l = layers.size(); l-- > 0;) {
    choice[l] = choices[l * width + static_cast<size_t>(b)];
    b -= discrete[l][choice[l]];
  }
  return choice;
}

// Per layer the valid candidate of least `what` (error or seconds), then of fewer bytes, then
// of the smaller index.
std::vector<int> leastChoice(const Layers& layers, double RateCandidate::*what) {
  std::vector<int> choice;
  for (const auto& layer : layers) {
    int best = -1;
    for (int k = 0; k < static_cast<int>(layer.size()); ++k) {
      if (!layer[k].valid) continue;
      if (best < 0 || layer[k].*what < layer[best].*what ||
          (layer[k].*what == layer[best].*what && layer[k].bytes < layer[best].bytes)) {
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
  fillTotals(layers, defaults, &plan);
  plan.defaultError = plan.error;
  plan.defaultBytes = plan.bytes;
  CDL_CHECK(std::isfinite(plan.defaultError),
            "rate planner: the defaults' total error overflows a double");
  plan.budget = options.alpha * plan.defaultError;
  CDL_CHECK(std::isfinite(plan.budget), "rate planner: the budget alpha * ", plan.defaultError,
            " overflows a double");
  Items<int64_t> items(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    for (const RateCandidate& c : layers[l]) items[l].push_back({c.error, c.bytes, c.valid});
  }
  plan.choice = solveKnapsack(items, plan.budget, options.buckets);
  plan.feasible = !plan.choice.empty() || layers.empty();
  if (plan.feasible) fillTotals(layers, plan.choice, &plan);
  if (options.alpha >= 1) {
    const bool defaultsWin = !plan.feasible || plan.defaultBytes < plan.bytes ||
                             (plan.defaultBytes == plan.bytes && plan.defaultError < plan.error);
    if (defaultsWin) {
      plan.choice = defaults;
      plan.feasible = true;
    }
  }
  if (!plan.feasible) plan.choice = leastChoice(layers, &RateCandidate::error);
  fillTotals(layers, plan.choice, &plan);
  return plan;
}

RatePlan planRatesForTime(const Layers& layers, const std::vector<int>& defaults,
                          double budgetSeconds, int buckets) {
  checkOptions({1.0, buckets});
  checkLayers(layers, defaults);
  CDL_CHECK(budgetSeconds >= 0 && std::isfinite(budgetSeconds),
            "rate planner: the time budget must be finite and >= 0, got ", budgetSeconds, " s");
  Items<double> items(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    for (size_t k = 0; k < layers[l].size(); ++k) {
      const RateCandidate& c = layers[l][k];
      CDL_CHECK(!c.valid || (c.seconds >= 0 && std::isfinite(c.seconds)), "rate planner: layer ", l,
                " candidate ", k, " takes ", c.seconds, " s, it must be finite and >= 0");
      items[l].push_back({c.seconds, c.error, c.valid});
    }
  }
  RatePlan plan;
  fillTotals(layers, defaults, &plan);
  plan.defaultError = plan.error;
  plan.defaultBytes = plan.bytes;
  plan.budget = budgetSeconds;
  plan.choice = solveKnapsack(items, budgetSeconds, buckets);
  plan.feasible = !plan.choice.empty() || layers.empty();
  if (!plan.feasible) plan.choice = leastChoice(layers, &RateCandidate::seconds);
  fillTotals(layers, plan.choice, &plan);
  return plan;
}

}  // namespace cdl::comm
