#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "comm/reduce/compressed_allreduce.h"
#include "comm/reduce/reducer.h"
#include "comm/transport/mpi/mpi_communicator.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> c = makeMpiCommunicator();
  return c;
}

std::vector<float> rankData(int rank, int64_t n) {
  std::mt19937 rng(static_cast<uint32_t>(500 + rank));
  std::normal_distribution<float> normal(0.0f, 0.01f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(rng);
  return x;
}

// True when every rank passed the same bytes.
bool sameEverywhere(Communicator& c, const void* data, size_t bytes) {
  const uint64_t h = XXH64(data, bytes, 0);
  Bytes mine(reinterpret_cast<const uint8_t*>(&h), reinterpret_cast<const uint8_t*>(&h) + 8), all;
  std::vector<size_t> sizes;
  c.allgatherv(mine, &all, &sizes)->wait(std::chrono::seconds(60));
  for (int r = 1; r < c.size(); ++r) {
    if (!std::equal(all.begin(), all.begin() + 8, all.begin() + 8 * r)) return false;
  }
  return true;
}

TEST(MpiCompressedAllreduce, EveryCodecAveragesWithinItsBoundOnIdenticalReplicas) {
  auto c = world();
  for (const char* specText : {"none", "fp16", "qsgd:bits=4,entropy=rans", "topk:density=0.05"}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, (int64_t{1} << 20) + 3}) {
      const CodecSpec spec = parseCodecSpec(specText);
      auto codec = makeCodec(spec.codec);
      std::vector<float> x = rankData(c->rank(), n);
      AllreduceStats st;
      compressedAllreduce(*c, *codec, spec.rate, x.data(), n, {}, &st);
      EXPECT_TRUE(sameEverywhere(*c, x.data(), x.size() * 4)) << specText << " n=" << n;
      if (spec.codec == CodecId::kTopk || n == 0) continue;
      // Compare against the exact average, with a tolerance per codec (4-bit qsgd: about a
      // step of the summed scales, a few times 0.01 * 4 sigma / 7 here).
      std::vector<double> exact(static_cast<size_t>(n), 0.0);
      for (int r = 0; r < c->size(); ++r) {
        const auto y = rankData(r, n);
        for (int64_t i = 0; i < n; ++i) exact[i] += y[i] / c->size();
      }
      const double tol = spec.codec == CodecId::kNone   ? 1e-7
                         : spec.codec == CodecId::kFp16 ? 1e-4
                                                        : 0.03;
      double worst = 0;
      for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(x[i] - exact[i]));
      EXPECT_LT(worst, tol) << specText << " n=" << n;
      if (c->size() > 1 && spec.codec != CodecId::kNone && n >= 1000) {
        EXPECT_LT(st.wireBytes, st.fp32Bytes) << specText << " n=" << n;
      }
    }
  }
}

TEST(MpiReducer, MismatchedParametersFailOnEveryRankNamingTheTensor) {
  auto c = world();
  const int64_t rows = c->rank() == c->size() - 1 ? 7 : 8;  // the last rank differs
  at::Tensor w = at::zeros({rows, 3}).set_requires_grad(true);
  at::Tensor b = at::zeros({3}).set_requires_grad(true);
  ReducerOptions o;
  o.timeoutSeconds = 60;
  try {
    Reducer reducer(c, {{"layer.weight", w}, {"layer.bias", b}}, o);
    ADD_FAILURE() << "no error for mismatched parameters";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("layer.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("rank " + std::to_string(c->size() - 1)), std::string::npos) << m;
  }
}

TEST(MpiReducer, TrainingStepGivesIdenticalAveragedGradients) {
  auto c = world();
  at::Tensor w = at::full({64, 32}, 0.01f).set_requires_grad(true);
  ReducerOptions o;
  o.scheme = parseSchemeSpec("qsgd:bits=4,entropy=rans");
  o.minCompressNumel = 16;
  o.timeoutSeconds = 60;
  Reducer reducer(c, {{"w", w}}, o);
  const auto x = rankData(c->rank(), 8 * 64);
  at::Tensor input = at::from_blob(const_cast<float*>(x.data()), {8, 64}).clone();
  input.matmul(w).pow(2).sum().backward();
  reducer.finalize();
  const at::Tensor g = w.grad().contiguous();
  EXPECT_TRUE(sameEverywhere(*c, g.data_ptr<float>(), g.numel() * 4));
  EXPECT_GT(reducer.lastStats().fp32Bytes, 0u);
}

}  // namespace
}  // namespace cdl::comm
