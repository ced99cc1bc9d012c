#include "comm/reduce/adaptive_rates.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "comm/reduce/powersgd.h"
#include "comm/reduce/reducer.h"
#include "kernels/base/error.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

using ::testing::HasSubstr;

std::vector<float> gradient(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(static_cast<size_t>(n));
  for (auto& v : g) v = normal(rng);
  return g;
}

std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CandidateGrid, HoldsEachFamilysRatesWithTheUniformEntropyStage) {
  const SchemeSpec uniform = parseSchemeSpec("qsgd:bits=4,entropy=none");
  const auto qsgd = candidateGrid({"qsgd"}, uniform, "k");
  ASSERT_EQ(qsgd.size(), 56u);  // bits x buckets x roundings
  std::set<std::string> distinct;
  for (const SchemeSpec& s : qsgd) {
    EXPECT_EQ(s.codec.rate.entropy, EntropyStage::kNone);
    distinct.insert(formatSchemeSpec(s));
  }
  EXPECT_EQ(distinct.size(), 56u);
  EXPECT_TRUE(distinct.count(
      formatSchemeSpec(parseSchemeSpec("qsgd:bits=2,bucket=4096,rounding=nearest,entropy=none"))));
  const auto all = candidateGrid({"qsgd", "topk", "powersgd"}, uniform, "k");
  ASSERT_EQ(all.size(), 56u + 7u + 6u);
  EXPECT_EQ(formatSchemeSpec(all[56]), formatSchemeSpec(parseSchemeSpec("topk:density=0.001")));
  EXPECT_NEAR(all[62].codec.rate.density, 0.1, 1e-12);
  EXPECT_EQ(all.back().rank, 32);
  EXPECT_THAT(errorOf([&] {
                candidateGrid({"qsgd", "lowrank"}, uniform, "comm.adaptive.families");
              }),
              HasSubstr("comm.adaptive.families: unknown family 'lowrank' (qsgd, topk, powersgd)"));
  EXPECT_THAT(errorOf([&] { candidateGrid({}, uniform, "comm.adaptive.families"); }),
              HasSubstr("comm.adaptive.families: no families"));
}

TEST(MeasureCandidate, ErrorsFallAndBytesRiseWithTheRate) {
  const std::vector<float> g = gradient(64 * 256, 1);
  double lastError = 1e300;
  int64_t lastBytes = 0;
  for (int bits : {2, 4, 8}) {
    const CandidateCost c = measureCandidate(
        g.data(), 64, 256, parseSchemeSpec("qsgd:bits=" + std::to_string(bits)), 4);
    EXPECT_TRUE(c.valid);
    EXPECT_LT(c.error, lastError) << bits;
    EXPECT_GT(c.bytes, lastBytes) << bits;
    lastError = c.error;
    lastBytes = c.bytes;
  }
  lastError = 1e300;
  for (int rank : {1, 4, 16}) {
    const CandidateCost c = measureCandidate(
        g.data(), 64, 256, parseSchemeSpec("powersgd:rank=" + std::to_string(rank)), 4);
    EXPECT_LT(c.error, lastError) << rank;
    // Two fp32 allreduces of r (rows + cols) floats, 2 (W - 1) / W of them sent per rank.
    EXPECT_EQ(c.bytes, std::llround(2.0 * 3 / 4 * 4.0 * rank * (64 + 256)));
    lastError = c.error;
  }
  const CandidateCost fp32 = measureCandidate(g.data(), 64, 256, parseSchemeSpec("none"), 4);
  EXPECT_EQ(fp32.error, 0.0);
  EXPECT_EQ(fp32.bytes, std::llround(2.0 * 3 / 4 * 4.0 * 64 * 256));
}

TEST(MeasureCandidate, TopKIsGatheredAndExactWhereItKeepsEverything) {
  const std::vector<float> g = gradient(1000, 2);
  const CandidateCost all =
      measureCandidate(g.data(), 10, 100, parseSchemeSpec("topk:density=1"), 3);
  EXPECT_EQ(all.error, 0.0);
  const CandidateCost some =
      measureCandidate(g.data(), 10, 100, parseSchemeSpec("topk:density=0.1"), 3);
  EXPECT_GT(some.error, 0.0);
  EXPECT_LT(some.bytes, all.bytes);
  // An allgather: each rank's payload to its two peers.
  EXPECT_EQ(some.bytes % 2, 0);
}

TEST(MeasureCandidate, ACandidateThatDoesNotFitALayerIsSkippedUnlessItIsTheDefault) {
  const std::vector<float> g = gradient(8 * 300, 3);
  const SchemeSpec big = parseSchemeSpec("powersgd:rank=8");  // (8 + 300) * 8 > 8 * 300
  EXPECT_FALSE(measureCandidate(g.data(), 8, 300, big, 2).valid);
  const CandidateCost fallback = measureCandidate(g.data(), 8, 300, big, 2, true);
  EXPECT_TRUE(fallback.valid);
  EXPECT_EQ(fallback.error, 0.0);
  EXPECT_EQ(fallback.bytes, 4 * 8 * 300);
  EXPECT_FALSE(measureCandidate(g.data(), 8, 300, parseSchemeSpec("topk:density=0.0001"), 2).valid);
}

TEST(SchemeChanges, ResidualsStayAndTheWarmStartIsTruncatedOrPadded) {
  const SchemeSpec q4 = parseSchemeSpec("qsgd:bits=4"), p2 = parseSchemeSpec("powersgd:rank=2"),
                   p4 = parseSchemeSpec("powersgd:rank=4");
  const int64_t cols = 5;
  TensorState s{{"residual", {1, 2, 3}}};
  adaptSchemeState(q4, p2, cols, 9, s);
  EXPECT_EQ(s.at("residual"), (std::vector<float>{1, 2, 3}));
  EXPECT_TRUE(s.at("q").empty());  // drawn at its first step
  s["q"] = std::vector<float>(2 * cols, 0.5f);
  adaptSchemeState(p2, p4, cols, 9, s);
  ASSERT_EQ(s.at("q").size(), 4u * cols);
  for (int j = 0; j < 2 * cols; ++j) EXPECT_EQ(s.at("q")[j], 0.5f);
  std::vector<float> drawn(cols);
  drawPowerSgdColumn(9, 3, cols, drawn.data());
  EXPECT_EQ(std::vector<float>(s.at("q").begin() + 3 * cols, s.at("q").end()), drawn);
  adaptSchemeState(p4, p2, cols, 9, s);
  EXPECT_EQ(s.at("q"), std::vector<float>(2 * cols, 0.5f));
  adaptSchemeState(p2, q4, cols, 9, s);
  EXPECT_EQ(s.count("q"), 0u);
  EXPECT_EQ(s.at("residual"), (std::vector<float>{1, 2, 3}));
}

// Two layers on thread ranks, each rank with its own gradients.
struct Layers {
  at::Tensor w1 = at::zeros({32, 64}).set_requires_grad(true);
  at::Tensor w2 = at::zeros({16, 32}).set_requires_grad(true);
  std::vector<std::pair<std::string, at::Tensor>> named() const {
    return {{"a.weight", w1}, {"b.weight", w2}};
  }
  void backward(int rank, int step) const {
    const std::vector<float> g1 = gradient(32 * 64, 10 * rank + step);
    const std::vector<float> g2 = gradient(16 * 32, 1000 + 10 * rank + step);
    (w1 * at::from_blob(const_cast<float*>(g1.data()), {32, 64})).sum().backward();
    (w2 * at::from_blob(const_cast<float*>(g2.data()), {16, 32})).sum().backward();
  }
};

// Both layers through 4-bit qsgd (neither is below the size threshold).
ReducerOptions qsgd4() {
  ReducerOptions ro;
  ro.scheme = parseSchemeSpec("qsgd:bits=4");
  ro.minCompressNumel = 100;
  return ro;
}

TEST(AdaptiveRates, EveryRankAppliesTheSamePlanAndKeepsItsResiduals) {
  const int size = 3;
  std::vector<std::map<std::string, std::string>> plans(size);
  std::vector<std::vector<uint64_t>> planSteps(size);
  std::vector<std::vector<float>> grads(size);
  test::spawn(size, [&](int rank, std::shared_ptr<Communicator> comm) {
    Layers net;
    ReducerOptions ro = qsgd4();
    Reducer reducer(comm, net.named(), ro);
    AdaptiveOptions ao;
    ao.warmupSteps = 3;
    ao.everySteps = 4;
    ao.window = 2;
    ao.candidates = candidateGrid({"qsgd", "powersgd"}, ro.scheme, "k");
    AdaptiveRates rates(reducer, *comm, ao);
    for (int step = 0; step < 12; ++step) {
      net.backward(rank, step);
      reducer.finalize();
      // A plan after steps 3, 7 and 11 measures the window of the 2 steps before it.
      const int64_t captured = reducer.capturedSteps();
      if (auto r = rates.afterStep(step + 1)) {
        EXPECT_EQ(captured, 2) << "step " << step;
        planSteps[rank].push_back(r->step);
        EXPECT_LE(r->error, r->budget * (1 + 1e-9));
        EXPECT_LE(r->bytes, r->uniformBytes);
      }
      net.w1.mutable_grad().zero_();
      net.w2.mutable_grad().zero_();
    }
    plans[rank] = rates.plan();
    const at::Tensor g = net.w1.grad();
    grads[rank].assign(g.data_ptr<float>(), g.data_ptr<float>() + g.numel());
  });
  EXPECT_EQ(planSteps[0], (std::vector<uint64_t>{3, 7, 11}));
  ASSERT_EQ(plans[0].size(), 2u);
  for (int r = 1; r < size; ++r) {
    EXPECT_EQ(plans[r], plans[0]);
    EXPECT_EQ(grads[r], grads[0]);
  }
}

// Note [Time budget]: each rank times its steps differently; the plan uses the ranks' means and
// is the same everywhere. A slow link buys less than uniform's bytes, a fast one the
// least error; before any timed step the plan falls back to the error budget.
std::vector<PlanReport> timeBudgetPlans(double linkBytesPerSecond, bool timed,
                                        std::vector<std::map<std::string, std::string>>* plans) {
  const int size = 3;
  std::vector<PlanReport> reports(size);
  plans->assign(size, {});
  test::spawn(size, [&](int rank, std::shared_ptr<Communicator> comm) {
    Layers net;
    ReducerOptions ro = qsgd4();
    Reducer reducer(comm, net.named(), ro);
    AdaptiveOptions ao;
    ao.budget = AdaptiveOptions::Budget::kTime;
    ao.overlap = 0.0;  // exposed communication up to the compute: the budget is H + compute
    ao.linkBytesPerSecond = linkBytesPerSecond;
    ao.warmupSteps = 3;
    ao.window = 2;
    ao.candidates = candidateGrid({"qsgd", "powersgd"}, ro.scheme, "k");
    AdaptiveRates rates(reducer, *comm, ao);
    for (int step = 0; step < 3; ++step) {
      net.backward(rank, step);
      reducer.finalize();
      StepTiming t;
      if (timed) t = {0.01 * (rank + 1), 0.001, 0.02 * (rank + 1)};
      if (auto r = rates.afterStep(step + 1, t)) reports[rank] = *r;
      net.w1.mutable_grad().zero_();
      net.w2.mutable_grad().zero_();
    }
    (*plans)[rank] = rates.plan();
  });
  for (int r = 1; r < size; ++r) EXPECT_EQ((*plans)[r], (*plans)[0]);
  return reports;
}

TEST(AdaptiveRates, ATimeBudgetCompressesMoreOnASlowLinkAndLessOnAFastOne) {
  std::vector<std::map<std::string, std::string>> plans;
  const PlanReport slow = timeBudgetPlans(2e4, true, &plans)[0];
  EXPECT_EQ(slow.budgetKind, "time");
  EXPECT_NEAR(slow.computeSeconds, 0.02, 1e-6);  // the mean of 10, 20 and 30 ms
  EXPECT_GE(slow.hiddenSeconds, 0.0);
  EXPECT_NEAR(slow.budget, slow.hiddenSeconds + 0.02, 1e-6);
  EXPECT_EQ(slow.linkBytesPerSecond, 2e4);
  EXPECT_GT(slow.uniformPredictedSeconds, slow.budget) << "uniform must not fit this link";
  EXPECT_LT(slow.bytes, slow.uniformBytes);
  if (slow.feasible) EXPECT_LE(slow.predictedSeconds, slow.budget * (1 + 1e-9));
  EXPECT_NEAR(slow.actualStepSeconds, 0.02, 1e-9);  // rank 0's own steps
  EXPECT_NEAR(slow.actualExposedSeconds, 0.001, 1e-9);

  const PlanReport fast = timeBudgetPlans(1e12, true, &plans)[0];
  EXPECT_TRUE(fast.feasible);
  EXPECT_LE(fast.error, fast.uniformError);
  EXPECT_GT(fast.bytes, fast.uniformBytes) << "a fast link affords finer than 4-bit qsgd";

  // No rate given: each plan probes the link (thread-ranks: memory copies, fast or too fast to
  // time).
  const PlanReport probed = timeBudgetPlans(0.0, true, &plans)[0];
  EXPECT_EQ(probed.budgetKind, "time");
  EXPECT_GT(probed.linkBytesPerSecond, 1e6);

  const PlanReport untimed = timeBudgetPlans(2e4, false, &plans)[0];
  EXPECT_EQ(untimed.budgetKind, "error (no timed steps)");
  EXPECT_LE(untimed.error, untimed.budget * (1 + 1e-9));
}

// With nothing else to choose, a plan keeps every layer at its configured scheme, overrides too.
TEST(AdaptiveRates, EachLayersDefaultIsItsConfiguredScheme) {
  test::spawn(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    Layers net;
    ReducerOptions ro;
    ro.scheme = parseSchemeSpec("qsgd:bits=4");
    ro.overrides = {{"b.*", parseSchemeSpec("qsgd:bits=8")}};
    ro.minCompressNumel = 100;
    Reducer reducer(comm, net.named(), ro);
    AdaptiveOptions ao;
    ao.warmupSteps = 2;
    ao.window = 1;
    AdaptiveRates rates(reducer, *comm, ao);
    std::optional<PlanReport> report;
    for (int step = 0; step < 2; ++step) {
      net.backward(rank, step);
      reducer.finalize();
      report = rates.afterStep(step + 1);
    }
    ASSERT_TRUE(report.has_value());
    EXPECT_EQ(report->bytes, report->uniformBytes);
    EXPECT_EQ(rates.plan().at("a.weight"), formatSchemeSpec(parseSchemeSpec("qsgd:bits=4")));
    EXPECT_EQ(rates.plan().at("b.weight"), formatSchemeSpec(parseSchemeSpec("qsgd:bits=8")));
  });
}

TEST(AdaptiveRates, ACandidateThatFitsNoLayerNamesTheKey) {
  test::spawn(1, [&](int, std::shared_ptr<Communicator> comm) {
    Layers net;
    ReducerOptions ro = qsgd4();
    Reducer reducer(comm, net.named(), ro);
    AdaptiveOptions ao;
    ao.candidates = {parseSchemeSpec("powersgd:rank=64")};
    ao.named = true;
    EXPECT_THAT(errorOf([&] { AdaptiveRates(reducer, *comm, ao); }),
                HasSubstr("comm.adaptive.candidates: 'powersgd:rank=64' applies to no layer"));
  });
}

}  // namespace
}  // namespace cdl::comm
