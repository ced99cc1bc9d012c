#include "comm/reduce/reducer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

at::Tensor randomTensor(std::vector<int64_t> shape, uint32_t seed, float scale = 0.1f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return at::from_blob(v.data(), shape, at::kFloat).clone();
}

// A two-layer network; every rank builds identical parameters and sees its own data.
struct Net {
  explicit Net(int64_t hidden = 64) {
    w1 = randomTensor({hidden, 100}, 1).set_requires_grad(true);
    b1 = randomTensor({hidden}, 2).set_requires_grad(true);
    w2 = randomTensor({10, hidden}, 3).set_requires_grad(true);
    b2 = randomTensor({10}, 4).set_requires_grad(true);
  }
  std::vector<std::pair<std::string, at::Tensor>> named() const {
    return {{"fc1.weight", w1}, {"fc1.bias", b1}, {"fc2.weight", w2}, {"fc2.bias", b2}};
  }
  at::Tensor loss(int rank, int step) const {
    const at::Tensor x = randomTensor({8, 100}, 100 + 10 * rank + step, 1.0f);
    return at::tanh(x.matmul(w1.t()) + b1).matmul(w2.t()).add(b2).pow(2).sum();
  }
  at::Tensor w1, b1, w2, b2;
};

// The reference: each rank's local gradients, averaged.
std::vector<at::Tensor> averagedGradients(int size, int step) {
  std::vector<at::Tensor> sum;
  for (int r = 0; r < size; ++r) {
    Net net;
    net.loss(r, step).backward();
    const auto named = net.named();
    for (size_t i = 0; i < named.size(); ++i) {
      const at::Tensor g = named[i].second.grad() / size;
      if (r == 0) {
        sum.push_back(g.clone());
      } else {
        sum[i] += g;
      }
    }
  }
  return sum;
}

ReducerOptions optionsFor(const std::string& codec, int64_t bucketBytes = int64_t{25} << 20) {
  ReducerOptions o;
  o.scheme = parseSchemeSpec(codec);
  o.bucketBytes = bucketBytes;
  o.firstBucketBytes = std::min<int64_t>(bucketBytes, int64_t{1} << 20);
  o.minCompressNumel = 100;
  o.timeoutSeconds = 30;
  return o;
}

class ReducerRanks : public ::testing::TestWithParam<int> {};

TEST_P(ReducerRanks, FinalizeWritesTheAverageOfEveryRanksGradientsIdenticallyEverywhere) {
  const int size = GetParam();
  std::vector<std::vector<at::Tensor>> grads(size);
  test::spawn(size, [&](int r, std::shared_ptr<Communicator> comm) {
    Net net;
    Reducer reducer(comm, net.named(), optionsFor("none", 1024));  // several small buckets
    EXPECT_GT(reducer.numBuckets(), 2);
    for (int step = 0; step < 2; ++step) {
      net.loss(r, step).backward();
      reducer.finalize();
    }
    for (const auto& [name, t] : net.named()) grads[r].push_back(t.grad().clone());
  });
  const auto want = averagedGradients(size, 1);
  for (int r = 0; r < size; ++r) {
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_TRUE(at::allclose(grads[r][i], want[i], 1e-5, 1e-6)) << "rank " << r << " #" << i;
      EXPECT_TRUE(at::equal(grads[r][i], grads[0][i])) << "rank " << r << " differs, #" << i;
    }
  }
}

TEST_P(ReducerRanks, CompressedGradientsStayCloseAndIdenticalAcrossRanks) {
  const int size = GetParam();
  std::vector<std::vector<at::Tensor>> grads(size);
  std::vector<ReducerStepStats> stats(size);
  test::spawn(size, [&](int r, std::shared_ptr<Communicator> comm) {
    Net net;
    Reducer reducer(comm, net.named(), optionsFor("qsgd:bits=8,entropy=rans"));
    net.loss(r, 0).backward();
    reducer.finalize();
    stats[r] = reducer.lastStats();
    for (const auto& [name, t] : net.named()) grads[r].push_back(t.grad().clone());
  });
  const auto want = averagedGradients(size, 0);
  for (int r = 0; r < size; ++r) {
    for (size_t i = 0; i < want.size(); ++i) {
      const double scale = want[i].abs().max().item<float>();
      EXPECT_LT((grads[r][i] - want[i]).abs().max().item<float>(), 0.05 * scale) << "#" << i;
      EXPECT_TRUE(at::equal(grads[r][i], grads[0][i])) << "rank " << r << " differs, #" << i;
    }
  }
  if (size > 1) {
    EXPECT_GT(stats[0].wireBytes, 0u);
    EXPECT_LT(stats[0].wireBytes, stats[0].fp32Bytes);
  }
}

TEST_P(ReducerRanks, PowerSgdIsIdenticalAcrossRanksAndErrorFeedbackLosesNothing) {
  const int size = GetParam();
  constexpr int kSteps = 40;
  std::vector<std::vector<at::Tensor>> first(size), mean(size), residual(size);
  test::spawn(size, [&](int r, std::shared_ptr<Communicator> comm) {
    Net net;
    Reducer reducer(comm, net.named(), optionsFor("powersgd:rank=1"));
    EXPECT_EQ(reducer.schemeOf("fc1.weight").scheme, SchemeId::kPowerSgd);
    EXPECT_EQ(reducer.schemeOf("fc1.bias").scheme, SchemeId::kPayload);
    EXPECT_EQ(reducer.schemeOf("fc1.bias").codec.codec, CodecId::kNone);
    const auto named = net.named();
    for (int step = 0; step < kSteps; ++step) {
      // The same data every step: the true average gradient stays fixed.
      net.loss(r, 0).backward();
      reducer.finalize();
      for (size_t i = 0; i < named.size(); ++i) {
        const at::Tensor g = named[i].second.grad().to(at::kDouble);
        if (step == 0) {
          first[r].push_back(g);
          mean[r].push_back(g / kSteps);
        } else {
          mean[r][i] += g / kSteps;
        }
        named[i].second.mutable_grad().zero_();
      }
    }
    auto state = reducer.schemeState();
    for (const auto& [name, t] : named) {
      std::vector<float>& e = state.at(name).at("residual");
      residual[r].push_back(e.empty()
                                ? at::zeros_like(t, at::kDouble)
                                : at::from_blob(e.data(), t.sizes(), at::kFloat).to(at::kDouble));
    }
    if (size > 1) {
      EXPECT_LT(reducer.lastStats().wireBytes, reducer.lastStats().fp32Bytes / 4);
    }
  });
  const auto want = averagedGradients(size, 0);
  for (size_t i = 0; i < want.size(); ++i) {
    // What was sent over kSteps steps is kSteps times the true average minus what the residuals
    // still hold: mean = want - (average residual) / kSteps.
    at::Tensor held = residual[0][i].clone();
    for (int r = 1; r < size; ++r) held += residual[r][i];
    held /= size * kSteps;
    const double scale = want[i].abs().max().item<float>();
    for (int r = 0; r < size; ++r) {
      EXPECT_TRUE(at::equal(mean[r][i], mean[0][i])) << "rank " << r << " differs, #" << i;
      const double identity = (mean[r][i] + held - want[i]).abs().max().item<double>();
      EXPECT_LT(identity, 1e-4 * scale) << "#" << i;
      const double once = (first[r][i] - want[i]).abs().max().item<double>();
      const double running = (mean[r][i] - want[i]).abs().max().item<double>();
      if (i == 0 || i == 2) {
        EXPECT_GT(once, 0.05 * scale) << "#" << i << ": rank 1 should lose part of a step";
        EXPECT_LT(running, 0.5 * once) << "#" << i;
      } else {
        EXPECT_LT(running, 1e-5 * scale + 1e-7) << "bias #" << i << " goes uncompressed";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, ReducerRanks, ::testing::Values(1, 2, 3));

// Note [Non-finite gradients]: a NaN in one rank's gradient is named there, enters the reduction
// as zeros (so lossy codecs and PowerSGD complete), and every rank learns that one rank saw it.
TEST_P(ReducerRanks, ANonFiniteGradientIsNamedAndCountedOnEveryRank) {
  const int size = GetParam();
  for (const std::string codec : {"none", "qsgd:bits=4,entropy=rans", "powersgd:rank=2"}) {
    SCOPED_TRACE(codec);
    std::vector<ReducerStepStats> stats(size);
    std::vector<bool> finite(size);
    test::spawn(size, [&](int r, std::shared_ptr<Communicator> comm) {
      Net net;
      ReducerOptions o = optionsFor(codec);
      o.minCompressNumel = 0;
      Reducer reducer(comm, net.named(), o);
      at::Tensor loss = net.loss(r, 0);
      if (r == size - 1) loss = loss + net.w2.sum() * std::numeric_limits<float>::infinity();
      loss.backward();
      reducer.finalize();
      stats[r] = reducer.lastStats();
      bool ok = true;
      for (const auto& [name, t] : net.named()) ok = ok && t.grad().isfinite().all().item<bool>();
      finite[r] = ok;
    });
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(stats[r].nonFiniteRanks, 1) << "rank " << r;
      EXPECT_EQ(stats[r].nonFinite, r == size - 1 ? "fc2.weight" : "") << "rank " << r;
      EXPECT_TRUE(finite[r]) << "rank " << r;
    }
  }
}

TEST(Reducer, MismatchedModelsFailNamingTheTensorAndRank) {
  std::vector<std::string> messages(2);
  test::spawn(2, [&](int r, std::shared_ptr<Communicator> comm) {
    Net net(r == 0 ? 64 : 32);
    try {
      Reducer reducer(comm, net.named(), optionsFor("none"));
    } catch (const Error& e) {
      messages[r] = e.what();
    }
  });
  for (const auto& m : messages) {
    EXPECT_NE(m.find("differs between ranks"), std::string::npos) << m;
    EXPECT_NE(m.find("fc1.weight [32, 100]"), std::string::npos) << m;  // the first that differs
    EXPECT_NE(m.find("rank 1"), std::string::npos) << m;
  }
}

TEST(Reducer, UnusedParametersCountAsZero) {
  test::spawn(2, [&](int r, std::shared_ptr<Communicator> comm) {
    Net net;
    at::Tensor unused = randomTensor({5}, 9).set_requires_grad(true);
    auto named = net.named();
    named.push_back({"unused", unused});
    Reducer reducer(comm, named, optionsFor("none"));
    net.loss(r, 0).backward();
    reducer.finalize();
    EXPECT_TRUE(at::equal(unused.grad(), at::zeros({5})));
  });
}

TEST(Reducer, ASecondBackwardBeforeFinalizeIsAnError) {
  test::spawn(1, [&](int, std::shared_ptr<Communicator> comm) {
    Net net;
    Reducer reducer(comm, net.named(), optionsFor("none"));
    net.loss(0, 0).backward();
    EXPECT_THROW(net.loss(0, 1).backward(), std::exception);
  });
}

TEST(Reducer, OverridesAndTheSizeThresholdChooseTheCodec) {
  test::spawn(1, [&](int, std::shared_ptr<Communicator> comm) {
    Net net;
    ReducerOptions o = optionsFor("qsgd:bits=4");
    o.overrides = {{"fc2.*", parseSchemeSpec("topk:density=0.1")}};
    Reducer reducer(comm, net.named(), o);
    EXPECT_EQ(reducer.schemeOf("fc1.weight").codec.codec, CodecId::kQsgd);
    EXPECT_EQ(reducer.schemeOf("fc2.weight").codec.codec, CodecId::kTopk);
    EXPECT_EQ(reducer.schemeOf("fc1.bias").codec.codec, CodecId::kNone);  // 64 < 100 elements
  });
}

TEST(Reducer, ErrorFeedbackStateRoundTripsAndRejectsWrongSizes) {
  test::spawn(1, [&](int, std::shared_ptr<Communicator> comm) {
    Net net;
    Reducer reducer(comm, net.named(), optionsFor("qsgd:bits=2,rounding=nearest"));
    net.loss(0, 0).backward();
    reducer.finalize();
    auto state = reducer.schemeState();
    ASSERT_EQ(state.at("fc1.weight").at("residual").size(), 6400u);
    float norm = 0;
    for (float v : state.at("fc1.weight").at("residual")) norm += v * v;
    EXPECT_GT(norm, 0.0f);
    reducer.restoreSchemeState(state);
    EXPECT_EQ(reducer.schemeState(), state);
    state["fc1.weight"]["residual"].pop_back();
    EXPECT_THROW(reducer.restoreSchemeState(state), Error);
  });
}

TEST(Reducer, PowerSgdStateRestoresIntoAFreshReducerAndBadStatesAreRejected) {
  std::vector<std::vector<at::Tensor>> cont(2), resumed(2);
  test::spawn(2, [&](int r, std::shared_ptr<Communicator> comm) {
    SchemeState saved;
    {
      Net net;
      Reducer reducer(comm, net.named(), optionsFor("powersgd:rank=2"));
      for (int step = 0; step < 3; ++step) {
        if (step == 2) saved = reducer.schemeState();
        net.loss(r, step).backward();
        reducer.finalize();
      }
      for (const auto& [name, t] : net.named()) cont[r].push_back(t.grad().clone());
    }
    ASSERT_EQ(saved.at("fc1.weight").at("q").size(), 200u);
    ASSERT_EQ(saved.at("fc1.weight").at("residual").size(), 6400u);
    Net net;
    Reducer reducer(comm, net.named(), optionsFor("powersgd:rank=2"));
    const auto fresh = reducer.schemeState();
    auto bad = saved;
    bad["fc2.weight"]["q"][3] = NAN;
    EXPECT_THROW(reducer.restoreSchemeState(bad), Error);
    bad = saved;
    bad["fc1.weight"]["residual"].resize(10);
    EXPECT_THROW(reducer.restoreSchemeState(bad), Error);
    bad = saved;
    bad["fc1.weight"].erase("q");
    EXPECT_THROW(reducer.restoreSchemeState(bad), Error);
    EXPECT_EQ(reducer.schemeState(), fresh);  // failed restores changed nothing
    reducer.restoreSchemeState(saved);
    net.loss(r, 2).backward();
    reducer.finalize();
    for (const auto& [name, t] : net.named()) resumed[r].push_back(t.grad().clone());
  });
  for (int r = 0; r < 2; ++r) {
    for (size_t i = 0; i < cont[r].size(); ++i) {
      EXPECT_TRUE(at::equal(resumed[r][i], cont[r][i])) << "rank " << r << " #" << i;
    }
  }
}

}  // namespace
}  // namespace cdl::comm
