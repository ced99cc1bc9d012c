#include "comm/reduce/compressed_allreduce.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "comm/codec/spec.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

std::vector<float> rankData(int rank, int64_t n) {
  std::mt19937 rng(static_cast<uint32_t>(1000 + rank));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(rng) * 0.01f;
  return x;
}

using Param = std::tuple<int, int64_t, std::string>;
class CompressedAllreduceTest : public ::testing::TestWithParam<Param> {};

TEST_P(CompressedAllreduceTest, MatchesTheFp32AverageWithinTheCodecBoundOnIdenticalReplicas) {
  const auto& [size, n, specText] = GetParam();
  const CodecSpec spec = parseCodecSpec(specText);
  auto codec = makeCodec(spec.codec);
  std::vector<std::vector<float>> out(size);
  test::spawnRanks(size, [&, n = n](int r, Communicator& c) {
    out[r] = rankData(r, n);
    compressedAllreduce(c, *codec, spec.rate, out[r].data(), n);
  });
  for (int r = 1; r < size; ++r) {
    ASSERT_EQ(std::memcmp(out[0].data(), out[r].data(), out[0].size() * 4), 0)
        << "rank " << r << " holds different bytes";
  }
  std::vector<std::vector<float>> in(size);
  for (int r = 0; r < size; ++r) in[r] = rankData(r, n);
  const float intervals = spec.rate.bits == 1 ? 1.0f : float((1 << spec.rate.bits) - 2);
  // Per bucket, the sum over ranks of the ranks' scales (max |x| of the bucket).
  const int64_t bucket = spec.rate.bucket;
  std::vector<double> sumScales(static_cast<size_t>((n + bucket - 1) / bucket), 0.0);
  for (int r = 0; r < size; ++r) {
    for (size_t b = 0; b < sumScales.size(); ++b) {
      float m = 0;
      for (int64_t j = int64_t(b) * bucket; j < std::min(n, int64_t(b + 1) * bucket); ++j) {
        m = std::max(m, std::fabs(in[r][j]));
      }
      sumScales[b] += m;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    double exact = 0;
    for (int r = 0; r < size; ++r) exact += in[r][i];
    exact /= size;
    double bound = 1e-6;
    if (spec.codec == CodecId::kFp16) bound += 1e-3 * 0.05;
    if (spec.codec == CodecId::kQsgd) {
      // Per rank, the first encoding errs by at most one step of its bucket; the re-encoded sum
      // by one step of the sum's bucket, whose scale is at most the sum of the ranks' scales.
      const double step = 2.0 / intervals, s = sumScales[i / bucket];
      bound = (step * s + step * s * (1 + step)) / size * 1.001 + 1e-7;
    }
    if (spec.codec == CodecId::kTopk) continue;  // checked exactly below
    ASSERT_NEAR(out[0][i], exact, bound) << "element " << i;
  }
  if (spec.codec == CodecId::kTopk) {
    // Each rank's kept entries are exact; the result is their rank-order sum over the ranks.
    std::vector<float> want(static_cast<size_t>(n), 0.0f);
    for (int r = 0; r < size; ++r) {
      std::vector<float> kept(static_cast<size_t>(n));
      codec->decode(codec->encode(in[r].data(), n, spec.rate), kept.data(), n);
      for (int64_t i = 0; i < n; ++i) want[i] = r == 0 ? kept[i] : want[i] + kept[i];
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[0][i], want[i] * (1.0f / size)) << i;
  }
}

std::string paramName(const ::testing::TestParamInfo<Param>& info) {
  std::string s = "np" + std::to_string(std::get<0>(info.param)) + "_n" +
                  std::to_string(std::get<1>(info.param)) + "_" + std::get<2>(info.param);
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    RanksSizesCodecs, CompressedAllreduceTest,
    ::testing::Combine(::testing::Values(1, 2, 3, 4, 8),
                       ::testing::Values<int64_t>(0, 1, 1000, (1 << 20) + 3),
                       ::testing::Values("none", "fp16", "qsgd:bits=4,entropy=rans",
                                         "qsgd:bits=2,bucket=256,rounding=nearest,entropy=none",
                                         "topk:density=0.01")),
    paramName);

// With error feedback, what a rank transmits over many steps averages to the true gradient even
// for a biased compressor; without it, the never-selected coordinates are lost.
TEST(CompressedAllreduce, ErrorFeedbackMakesTheRunningMeanConverge) {
  const int size = 2, steps = 600;
  const int64_t n = 200;
  auto codec = makeCodec("topk");
  LayerRate rate;
  rate.density = 0.05;
  for (bool feedback : {true, false}) {
    std::vector<std::vector<double>> mean(size, std::vector<double>(n, 0.0));
    test::spawnRanks(size, [&](int r, Communicator& c) {
      std::vector<float> residual(n, 0.0f);
      for (int t = 0; t < steps; ++t) {
        std::vector<float> g = rankData(r, n);  // the same gradient every step
        CompressedAllreduceOptions opt;
        opt.residual = feedback ? residual.data() : nullptr;
        compressedAllreduce(c, *codec, rate, g.data(), n, opt);
        for (int64_t i = 0; i < n; ++i) mean[r][i] += g[i] / steps;
      }
    });
    double worst = 0;
    const auto a = rankData(0, n), b = rankData(1, n);
    for (int64_t i = 0; i < n; ++i)
      worst = std::max(worst, std::fabs(mean[0][i] - 0.5 * (a[i] + b[i])));
    if (feedback) {
      EXPECT_LT(worst, 2e-3) << "with error feedback";
    } else {
      EXPECT_GT(worst, 5e-3) << "without error feedback the dropped coordinates stay lost";
    }
  }
}

TEST(CompressedAllreduce, ErrorFeedbackResidualHoldsWhatTheEncodingLost) {
  auto codec = makeCodec("qsgd");
  LayerRate rate;
  rate.bits = 2;
  rate.rounding = kernels::Rounding::kNearest;
  test::spawnRanks(1, [&](int, Communicator& c) {
    std::vector<float> g = rankData(0, 5000), residual(5000, 0.0f);
    const std::vector<float> orig = g;
    CompressedAllreduceOptions opt;
    opt.residual = residual.data();
    compressedAllreduce(c, *codec, rate, g.data(), 5000, opt);
    for (int i = 0; i < 5000; ++i) ASSERT_NEAR(g[i] + residual[i], orig[i], 1e-6) << i;
  });
}

// Note [Pipelined scatter-reduce]: with nearest rounding the segments change nothing, bit for bit,
// in the result and the error-feedback residual, whatever the segment size (a partial last
// segment, segments smaller than a rank's chunk, ranks that do not divide a segment), and every
// rank still ends with the same bytes.
TEST(CompressedAllreduce, PipelineSegmentsGiveTheUnsegmentedResultBitForBit) {
  const int64_t n = 300001;
  for (const std::string specText : {"qsgd:bits=4,bucket=512,rounding=nearest,entropy=rans", "fp16",
                                     "qsgd:bits=2,bucket=128,rounding=nearest,entropy=none"}) {
    const CodecSpec spec = parseCodecSpec(specText);
    auto codec = makeCodec(spec.codec);
    for (int size : {1, 3, 4}) {
      const auto reduce = [&](int64_t segmentBytes, std::vector<std::vector<float>>* residuals) {
        std::vector<std::vector<float>> out(size);
        residuals->assign(size, std::vector<float>(n, 0.0f));
        test::spawnRanks(size, [&](int r, Communicator& c) {
          CompressedAllreduceOptions opt;
          opt.segmentBytes = segmentBytes;
          opt.residual = (*residuals)[r].data();
          for (int step = 0; step < 2; ++step) {  // the second step adds the first's residual
            out[r] = rankData(r + step, n);
            compressedAllreduce(c, *codec, spec.rate, out[r].data(), n, opt);
          }
        });
        return out;
      };
      std::vector<std::vector<float>> wholeResidual, segResidual;
      const auto whole = reduce(0, &wholeResidual);
      for (int64_t segmentBytes : {int64_t{4096}, int64_t{65536}, int64_t{1} << 20}) {
        SCOPED_TRACE(specText + " on " + std::to_string(size) + " ranks, segments of " +
                     std::to_string(segmentBytes) + " bytes");
        const auto seg = reduce(segmentBytes, &segResidual);
        for (int r = 0; r < size; ++r) {
          ASSERT_EQ(std::memcmp(seg[r].data(), whole[r].data(), n * 4), 0) << "rank " << r;
          ASSERT_EQ(std::memcmp(segResidual[r].data(), wholeResidual[r].data(), n * 4), 0)
              << "rank " << r << "'s residual";
        }
      }
    }
  }
}

// Stochastic rounding draws per segment and chunk: the replicas stay identical and the average
// over draws converges to the true average (its error falls well below one draw's).
TEST(CompressedAllreduce, PipelinedStochasticRoundingKeepsReplicasIdenticalAndUnbiased) {
  const int size = 3, trials = 200;
  const int64_t n = 4096;
  const CodecSpec spec = parseCodecSpec("qsgd:bits=2,bucket=256,rounding=stochastic");
  auto codec = makeCodec(spec.codec);
  std::vector<std::vector<double>> mean(size, std::vector<double>(n, 0.0));
  std::vector<std::vector<float>> first(size);
  test::spawnRanks(size, [&](int r, Communicator& c) {
    CompressedAllreduceOptions opt;
    opt.segmentBytes = 4096;  // 4 segments
    for (int t = 0; t < trials; ++t) {
      std::vector<float> g = rankData(r, n);
      opt.roundingKey = kernels::roundingKey(9, static_cast<uint64_t>(t), 0);
      compressedAllreduce(c, *codec, spec.rate, g.data(), n, opt);
      if (t == 0) first[r] = g;
      for (int64_t i = 0; i < n; ++i) mean[r][i] += g[i] / trials;
    }
  });
  std::vector<double> exact(n, 0.0);
  for (int r = 0; r < size; ++r) {
    const std::vector<float> x = rankData(r, n);
    for (int64_t i = 0; i < n; ++i) exact[i] += x[i] / size;
  }
  double oneDraw = 0.0, averaged = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int r = 1; r < size; ++r) {
      ASSERT_EQ(mean[r][i], mean[0][i]) << "rank " << r << " at " << i;
      ASSERT_EQ(first[r][i], first[0][i]) << "rank " << r << " at " << i;
    }
    oneDraw += std::fabs(first[0][i] - exact[i]);
    averaged += std::fabs(mean[0][i] - exact[i]);
  }
  EXPECT_GT(oneDraw, 0.0);
  EXPECT_LT(averaged, 0.2 * oneDraw) << "the pipelined average does not converge";
}

}  // namespace
}  // namespace cdl::comm
