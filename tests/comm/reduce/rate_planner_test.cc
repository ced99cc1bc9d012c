#include "comm/reduce/rate_planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

using Layers = std::vector<std::vector<RateCandidate>>;

struct Instance {
  Layers layers;
  std::vector<int> defaults;
};

const double kAlphas[] = {0.3, 0.7, 1.0, 1.5, 3.0};
const int kBuckets[] = {1, 7, 100, 10000};

// Up to 5 layers x 6 candidates. Even seeds draw from a few values (ties in sizes and errors, zero
// errors); odd seeds draw continuous errors. About one candidate in five is invalid.
Instance randomInstance(uint32_t seed) {
  std::mt19937 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const bool ties = seed % 2 == 0;
  const double fewErrors[] = {0, 0.25, 0.5, 1, 2, 3};
  Instance in;
  const int numLayers = uniform(1, 5);
  for (int l = 0; l < numLayers; ++l) {
    std::vector<RateCandidate> layer(static_cast<size_t>(uniform(1, 6)));
    for (RateCandidate& c : layer) {
      c.error = ties ? fewErrors[uniform(0, 5)]
                     : (uniform(0, 9) == 0 ? 0 : std::uniform_real_distribution<>(0, 10)(rng));
      c.bytes = ties ? uniform(0, 8) : uniform(0, 1000);
      c.valid = uniform(0, 4) != 0;
    }
    const int dflt = uniform(0, static_cast<int>(layer.size()) - 1);
    layer[static_cast<size_t>(dflt)].valid = true;
    in.layers.push_back(layer);
    in.defaults.push_back(dflt);
  }
  return in;
}

// The discrete error of Note [Rate planner], written out again; -1 marks "never fits".
int64_t discrete(double e, double budget, int buckets) {
  if (e == 0) return 0;
  if (budget == 0) return -1;
  const double d = std::ceil(e * (buckets / budget));
  return d <= buckets ? static_cast<int64_t>(d) : -1;
}

struct Totals {
  int64_t bytes = 0;
  int64_t discrete = 0;
  double error = 0;
};

Totals totals(const Instance& in, const std::vector<int>& choice, double budget, int buckets) {
  Totals t;
  for (size_t l = 0; l < choice.size(); ++l) {
    const RateCandidate& c = in.layers[l][static_cast<size_t>(choice[l])];
    const int64_t d = discrete(c.error, budget, buckets);
    t.bytes += c.bytes;
    t.error += c.error;
    t.discrete = (t.discrete < 0 || d < 0) ? -1 : t.discrete + d;
  }
  return t;
}

// The odometer over every combination of candidates: the next one after cur; false after the
// last (cur is then all zeros again).
bool nextPlan(const Instance& in, std::vector<int>& cur) {
  for (size_t l = 0; l < cur.size(); ++l) {
    if (++cur[l] < static_cast<int>(in.layers[l].size())) return true;
    cur[l] = 0;
  }
  return false;
}

// True when a is the better knapsack plan: fewer bytes, then less discrete error, then the smaller
// index in the last layer, then in the layer before, and so on.
bool betterKnapsackPlan(const Totals& ta, const std::vector<int>& a, const Totals& tb,
                        const std::vector<int>& b) {
  if (ta.bytes != tb.bytes) return ta.bytes < tb.bytes;
  if (ta.discrete != tb.discrete) return ta.discrete < tb.discrete;
  return std::lexicographical_compare(a.rbegin(), a.rend(), b.rbegin(), b.rend());
}

// Enumerates every combination of valid candidates; the same final rule as planRates.
RatePlan bruteForce(const Instance& in, double alpha, int buckets) {
  const Totals dflt = totals(in, in.defaults, 0, buckets);
  const double budget = alpha * dflt.error;
  std::vector<int> best, cur(in.layers.size(), 0);
  Totals bestTotals;
  for (bool more = true; more;) {
    bool valid = true;
    for (size_t l = 0; l < cur.size(); ++l) valid = valid && in.layers[l][cur[l]].valid;
    const Totals t = totals(in, cur, budget, buckets);
    if (valid && t.discrete >= 0 && t.discrete <= buckets &&
        (best.empty() || betterKnapsackPlan(t, cur, bestTotals, best))) {
      best = cur;
      bestTotals = t;
    }
    more = nextPlan(in, cur);
  }
  RatePlan plan;
  plan.feasible = !best.empty();
  plan.choice = best;
  plan.bytes = bestTotals.bytes;
  plan.error = bestTotals.error;
  if (alpha >= 1 && (!plan.feasible || dflt.bytes < plan.bytes ||
                     (dflt.bytes == plan.bytes && dflt.error < plan.error))) {
    plan.feasible = true;
    plan.choice = in.defaults;
    plan.bytes = dflt.bytes;
  }
  return plan;
}

TEST(RatePlanner, DynamicProgramEqualsBruteForceIncludingTiesAndInfeasibility) {
  int infeasible = 0, notDefaults = 0, cases = 0;
  for (uint32_t seed = 0; seed < 300; ++seed) {
    const Instance in = randomInstance(seed);
    for (double alpha : kAlphas) {
      for (int buckets : kBuckets) {
        SCOPED_TRACE("seed " + std::to_string(seed) + " alpha " + std::to_string(alpha) +
                     " buckets " + std::to_string(buckets));
        const RatePlan want = bruteForce(in, alpha, buckets);
        const RatePlan got = planRates(in.layers, in.defaults, {alpha, buckets});
        ASSERT_EQ(got.feasible, want.feasible);
        if (!want.feasible) {
          ++infeasible;
          continue;
        }
        ASSERT_EQ(got.choice, want.choice);
        ASSERT_EQ(got.bytes, want.bytes);
        notDefaults += got.choice != in.defaults;
        ++cases;
      }
    }
  }
  // The instances reach both outcomes, not only the easy one.
  EXPECT_GT(infeasible, 100);
  EXPECT_GT(notDefaults, 1000);
  EXPECT_GT(cases, 3000);
}

TEST(RatePlanner, EveryFeasiblePlanStaysWithinTheBudget) {
  for (uint32_t seed = 0; seed < 300; ++seed) {
    const Instance in = randomInstance(seed);
    for (double alpha : kAlphas) {
      for (int buckets : kBuckets) {
        const RatePlan p = planRates(in.layers, in.defaults, {alpha, buckets});
        EXPECT_DOUBLE_EQ(p.budget, alpha * p.defaultError);
        if (p.feasible) {
          EXPECT_LE(p.error, p.budget * (1 + 1e-9)) << "seed " << seed;
        }
      }
    }
  }
}

TEST(RatePlanner, AtAlphaOneThePlanIsNeverLargerOrLessAccurateThanUniform) {
  for (uint32_t seed = 0; seed < 300; ++seed) {
    const Instance in = randomInstance(seed);
    for (int buckets : kBuckets) {
      const RatePlan p = planRates(in.layers, in.defaults, {1.0, buckets});
      ASSERT_TRUE(p.feasible);
      EXPECT_LE(p.bytes, p.defaultBytes) << "seed " << seed;
      EXPECT_LE(p.error, p.defaultError * (1 + 1e-9)) << "seed " << seed;
    }
  }
}

// Exact, not only for the true optimum: a larger alpha gives a smaller scale, so every ceil'd
// error is no larger and every plan that fits the smaller alpha fits the larger one too.
TEST(RatePlanner, ASmallerAlphaIsNeverLooser) {
  const double alphas[] = {0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0};
  for (uint32_t seed = 0; seed < 300; ++seed) {
    const Instance in = randomInstance(seed);
    for (int buckets : kBuckets) {
      RatePlan prev;
      for (double alpha : alphas) {
        const RatePlan p = planRates(in.layers, in.defaults, {alpha, buckets});
        if (prev.feasible) {
          ASSERT_TRUE(p.feasible) << "seed " << seed << " alpha " << alpha;
          EXPECT_LE(p.bytes, prev.bytes) << "seed " << seed << " alpha " << alpha;
        }
        prev = p;
      }
    }
  }
}

TEST(RatePlanner, SpendsBytesOnAHardLayerToCompressEasyLayersHarder) {
  // (error, bytes): the easy layers lose little at 2 bits, the hard one a lot at 4 bits.
  const std::vector<RateCandidate> easy = {{1, 800}, {2, 400}, {4, 100}};
  const std::vector<RateCandidate> hard = {{5, 800}, {20, 400}};
  const RatePlan p = planRates({hard, easy, easy, easy}, {1, 1, 1, 1}, {});
  EXPECT_TRUE(p.feasible);
  EXPECT_EQ(p.choice, (std::vector<int>{0, 2, 2, 2}));
  EXPECT_EQ(p.bytes, 1100);
  EXPECT_DOUBLE_EQ(p.error, 17);
  EXPECT_EQ(p.defaultBytes, 1600);
  EXPECT_DOUBLE_EQ(p.defaultError, 26);
  EXPECT_DOUBLE_EQ(p.budget, 26);
}

TEST(RatePlanner, AnInfeasibleBudgetGivesTheLeastErrorCandidatesAndNoThrow) {
  const std::vector<RateCandidate> layer = {{3, 5}, {1, 10}, {1, 10, false}, {5, 1}};
  RatePlan p;
  ASSERT_NO_THROW(p = planRates({layer, layer}, {3, 3}, {0.1, 10000}));  // budget 1 < 2
  EXPECT_FALSE(p.feasible);
  EXPECT_EQ(p.choice, (std::vector<int>{1, 1}));
  EXPECT_DOUBLE_EQ(p.error, 2);
  EXPECT_EQ(p.bytes, 20);
  EXPECT_DOUBLE_EQ(p.budget, 1);
}

TEST(RatePlanner, NoLayersGiveAnEmptyFeasiblePlan) {
  const RatePlan p = planRates({}, {}, {0.5, 10});
  EXPECT_TRUE(p.feasible);
  EXPECT_TRUE(p.choice.empty());
  EXPECT_EQ(p.bytes, 0);
  EXPECT_EQ(p.error, 0);
}

void expectErrorNaming(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error, expected one naming '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(RatePlanner, BadInputIsAnErrorThatNamesTheKeyOrLayer) {
  const std::vector<RateCandidate> ok = {{1, 10}, {2, 5}};
  const Layers four = {ok, ok, ok, ok};
  const std::vector<int> d4 = {0, 0, 0, 0};
  auto plan = [&](Layers layers, std::vector<int> d, RatePlannerOptions o = {}) {
    return [=] { planRates(layers, d, o); };
  };
  const double inf = std::numeric_limits<double>::infinity();
  expectErrorNaming(plan(four, d4, {0, 10}), "alpha");
  expectErrorNaming(plan(four, d4, {-1, 10}), "alpha");
  expectErrorNaming(plan(four, d4, {inf, 10}), "alpha");
  expectErrorNaming(plan(four, d4, {std::nan(""), 10}), "alpha");
  expectErrorNaming(plan(four, d4, {1, 0}), "buckets");
  expectErrorNaming(plan(four, d4, {1, 10000001}), "buckets");
  expectErrorNaming(plan(four, {0, 0, 0}), "4 layers but 3 defaults");
  expectErrorNaming(plan({ok, ok, ok, {}}, d4), "layer 3 has no candidates");
  expectErrorNaming(plan({ok, ok, {{1, 1, false}}, ok}, d4), "layer 2 has no valid candidate");
  expectErrorNaming(plan(four, {0, 2, 0, 0}), "layer 1 default 2 is out of range");
  expectErrorNaming(plan(four, {0, -1, 0, 0}), "layer 1 default -1 is out of range");
  expectErrorNaming(plan({ok, {{1, 1, false}, {1, 1}}, ok, ok}, d4), "layer 1 default 0 is not");
  expectErrorNaming(plan({ok, ok, {{1, 1}, {-1, 1}}, ok}, d4), "layer 2 candidate 1 has error");
  expectErrorNaming(plan({ok, ok, {{1, 1}, {inf, 1}}, ok}, d4), "layer 2 candidate 1 has error");
  expectErrorNaming(plan({ok, {{1, -1}}, ok, ok}, d4), "layer 1 candidate 0 has bytes -1");
  expectErrorNaming(plan({std::vector<RateCandidate>(256), ok}, {0, 0}), "layer 0 has 256");
  const int64_t half = std::numeric_limits<int64_t>::max() / 2;
  expectErrorNaming(plan({{{1, half}}, {{1, 1}}}, {0, 0}), "INT64_MAX / 2");
  EXPECT_NO_THROW(planRates({{{1, half}}, {{1, 0}}}, {0, 0}, {}));
  EXPECT_NO_THROW(planRates({std::vector<RateCandidate>(255)}, {254}, {}));
}

// Note [Time budget]: the instance's candidates get seconds too (a few values or continuous).
Instance withSeconds(Instance in, uint32_t seed) {
  std::mt19937 rng(seed * 7919u + 1);
  const double few[] = {0, 0.5, 1, 2};
  for (auto& layer : in.layers) {
    for (RateCandidate& c : layer) {
      c.seconds = seed % 2 == 0 ? few[std::uniform_int_distribution<int>(0, 3)(rng)]
                                : std::uniform_real_distribution<>(0, 5)(rng);
    }
  }
  return in;
}

double defaultSeconds(const Instance& in) {
  double t = 0;
  for (size_t l = 0; l < in.layers.size(); ++l) t += in.layers[l][in.defaults[l]].seconds;
  return t;
}

// Every combination of valid candidates: the least error within the discretized time budget,
// then less discrete time, then the smaller index in the last layer, and so on; none fitting, the
// least time per layer.
RatePlan bruteForceTime(const Instance& in, double budget, int buckets) {
  std::vector<int> best, cur(in.layers.size(), 0);
  double bestError = 0;
  int64_t bestTime = 0;
  for (bool more = true; more;) {
    bool valid = true;
    double error = 0;
    int64_t time = 0;
    for (size_t l = 0; l < cur.size(); ++l) {
      const RateCandidate& c = in.layers[l][cur[l]];
      valid = valid && c.valid;
      const int64_t d = discrete(c.seconds, budget, buckets);
      time = (time < 0 || d < 0) ? -1 : time + d;
      error += c.error;
    }
    const bool better =
        best.empty() || error < bestError ||
        (error == bestError &&
         (time < bestTime ||
          (time == bestTime &&
           std::lexicographical_compare(cur.rbegin(), cur.rend(), best.rbegin(), best.rend()))));
    if (valid && time >= 0 && time <= buckets && better) {
      best = cur;
      bestError = error;
      bestTime = time;
    }
    more = nextPlan(in, cur);
  }
  RatePlan plan;
  plan.feasible = !best.empty();
  plan.choice = best;
  if (!plan.feasible) {
    for (const auto& layer : in.layers) {
      int k = -1;
      for (int j = 0; j < static_cast<int>(layer.size()); ++j) {
        if (layer[j].valid &&
            (k < 0 || layer[j].seconds < layer[k].seconds ||
             (layer[j].seconds == layer[k].seconds && layer[j].bytes < layer[k].bytes))) {
          k = j;
        }
      }
      plan.choice.push_back(k);
    }
  }
  return plan;
}

TEST(RatePlanner, TheTimeBudgetsProgramEqualsBruteForceAndStaysWithinItsBudget) {
  int infeasible = 0, feasible = 0;
  for (uint32_t seed = 0; seed < 300; ++seed) {
    const Instance in = withSeconds(randomInstance(seed), seed);
    for (double share : {0.0, 0.3, 0.7, 1.0, 2.0}) {
      const double budget = share * defaultSeconds(in);
      for (int buckets : kBuckets) {
        SCOPED_TRACE("seed " + std::to_string(seed) + " budget " + std::to_string(budget) +
                     " buckets " + std::to_string(buckets));
        const RatePlan want = bruteForceTime(in, budget, buckets);
        const RatePlan got = planRatesForTime(in.layers, in.defaults, budget, buckets);
        ASSERT_EQ(got.feasible, want.feasible);
        ASSERT_EQ(got.choice, want.choice);
        if (got.feasible) {
          ASSERT_LE(got.seconds, budget * (1 + 1e-12));
          ++feasible;
        } else {
          ++infeasible;
        }
      }
    }
  }
  EXPECT_GT(infeasible, 100);
  EXPECT_GT(feasible, 3000);
}

TEST(RatePlanner, MoreTimeNeverCostsAccuracyAndNoTimeTakesTheFastest) {
  const Layers layers = {{{4.0, 100, true, 0.1}, {1.0, 400, true, 0.4}, {0.2, 1600, true, 1.6}},
                         {{3.0, 50, true, 0.05}, {0.5, 200, true, 0.2}, {0.1, 800, true, 0.8}}};
  double last = std::numeric_limits<double>::infinity();
  for (double budget : {0.2, 0.3, 0.6, 1.0, 2.0, 2.4, 10.0}) {
    const RatePlan p = planRatesForTime(layers, {0, 0}, budget, 1000);
    EXPECT_TRUE(p.feasible) << budget;
    EXPECT_LE(p.seconds, budget * (1 + 1e-12)) << budget;
    EXPECT_LE(p.error, last) << budget;
    last = p.error;
  }
  EXPECT_EQ(planRatesForTime(layers, {0, 0}, 10.0, 1000).choice, (std::vector<int>{2, 2}));
  const RatePlan none = planRatesForTime(layers, {1, 1}, 0.1, 1000);
  EXPECT_FALSE(none.feasible);
  EXPECT_EQ(none.choice, (std::vector<int>{0, 0}));
  EXPECT_NEAR(none.seconds, 0.15, 1e-12);
  EXPECT_NEAR(none.defaultError, 1.5, 1e-12);
  expectErrorNaming([&] { planRatesForTime(layers, {0, 0}, -1.0, 1000); }, "time budget");
  expectErrorNaming([&] { planRatesForTime(layers, {0, 0}, std::nan(""), 1000); }, "time budget");
  expectErrorNaming(
      [&] {
        planRatesForTime({{{1, 1, true, -0.5}}}, {0}, 1.0, 1000);
      },
      "layer 0 candidate 0 takes -0.5 s");
  expectErrorNaming([&] { planRatesForTime(layers, {0, 0}, 1.0, 0); }, "buckets");
}

TEST(RatePlanner, TwoHundredLayersOfThirtyCandidatesPlanDeterministically) {
  std::mt19937 rng(7);
  Layers layers(200, std::vector<RateCandidate>(30));
  std::vector<int> defaults(200, 15);
  for (auto& layer : layers) {
    for (RateCandidate& c : layer) {
      c.error = std::uniform_real_distribution<>(0, 100)(rng);
      c.bytes = std::uniform_int_distribution<int64_t>(1, int64_t{1} << 30)(rng);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const RatePlan a = planRates(layers, defaults, {1.0, 10000});
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("rate planner: 200 layers x 30 candidates x 10000 buckets in %.1f ms\n", ms);
  const RatePlan b = planRates(layers, defaults, {1.0, 10000});
  EXPECT_TRUE(a.feasible);
  EXPECT_EQ(a.choice, b.choice);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_LE(a.bytes, a.defaultBytes);
  EXPECT_LE(a.error, a.budget * (1 + 1e-9));
}

}  // namespace
}  // namespace cdl::comm
