#include "comm/reduce/powersgd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Matrix = std::vector<float>;

Matrix gaussian(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Matrix x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(rng) * scale;
  return x;
}

// U V^T with Gaussian U (rows x r) and V (cols x r): rank r almost surely.
Matrix lowRank(int64_t rows, int64_t cols, int r, uint32_t seed) {
  const Matrix u = gaussian(rows * r, seed), v = gaussian(cols * r, seed + 1);
  Matrix a(static_cast<size_t>(rows * cols), 0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int k = 0; k < r; ++k) s += double(u[i * r + k]) * v[j * r + k];
      a[i * cols + j] = static_cast<float>(s);
    }
  }
  return a;
}

double relativeError(const Matrix& got, const Matrix& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

bool allFinite(const Matrix& x) {
  for (float v : x) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

class PowerSgdRanks : public ::testing::TestWithParam<int> {};

// Rank w holds A + N_w with sum_w N_w = 0 and each N_w of full rank: the average is exactly the
// rank-4 A, which rank-4 PowerSGD must reproduce.
TEST_P(PowerSgdRanks, ReconstructsTheRankRAverageToFloatTolerance) {
  const int size = GetParam(), r = 4, steps = 4;
  const int64_t rows = 64, cols = 48, n = rows * cols;
  const Matrix a = lowRank(rows, cols, r, 7);
  std::vector<Matrix> input(size, a);
  if (size > 1) {
    std::vector<Matrix> b(size);
    Matrix mean(n, 0.0f);
    for (int w = 0; w < size; ++w) {
      b[w] = gaussian(n, 100 + w);
      for (int64_t i = 0; i < n; ++i) mean[i] += b[w][i] / size;
    }
    for (int w = 0; w < size; ++w) {
      for (int64_t i = 0; i < n; ++i) input[w][i] += b[w][i] - mean[i];
    }
  }
  std::vector<std::vector<Matrix>> out(size, std::vector<Matrix>(steps));
  test::spawnRanks(size, [&](int w, Communicator& c) {
    PowerSgdState state("fc.weight", rows, cols);
    PowerSgdOptions opt;
    opt.rank = r;
    opt.seed = 42;
    for (int t = 0; t < steps; ++t) {
      out[w][t] = input[w];
      powerSgdAllreduce(c, state, out[w][t].data(), rows, cols, opt);
    }
  });
  for (int t = 1; t < steps; ++t) {
    EXPECT_LT(relativeError(out[0][t], a), 1e-4) << "step " << t;
  }
}

// Every replica must apply the same update, or the models drift apart.
TEST_P(PowerSgdRanks, EveryRankHoldsIdenticalBytesAfterEachStep) {
  const int size = GetParam(), r = 3, steps = 4;
  const int64_t rows = 37, cols = 29, n = rows * cols;  // odd sizes reach the loop tails
  std::vector<std::vector<Matrix>> out(size, std::vector<Matrix>(steps));
  std::vector<std::vector<Matrix>> q(size, std::vector<Matrix>(steps));
  test::spawnRanks(size, [&](int w, Communicator& c) {
    PowerSgdState state("conv2.weight", rows, cols);
    PowerSgdOptions opt;
    opt.rank = r;
    for (int t = 0; t < steps; ++t) {
      out[w][t] = gaussian(n, 1000 * w + t);
      powerSgdAllreduce(c, state, out[w][t].data(), rows, cols, opt);
      q[w][t] = state.q();
    }
  });
  for (int t = 0; t < steps; ++t) {
    ASSERT_TRUE(allFinite(out[0][t]));
    for (int w = 1; w < size; ++w) {
      ASSERT_EQ(std::memcmp(out[0][t].data(), out[w][t].data(), n * 4), 0)
          << "rank " << w << " step " << t;
      ASSERT_EQ(q[0][t], q[w][t]) << "warm-start Q of rank " << w << " step " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, PowerSgdRanks, ::testing::Values(1, 2, 3, 4));

// Note [PowerSGD phases]: a caller that sums P and Q itself (the Python hook over a process
// group) gets powerSgdAllreduce's bits. With 2 ranks a sum of two floats is the same bits in
// either order, so summing here matches the group's allreduce exactly.
TEST(PowerSgd, ThePhasesWithSummedFactorsGiveTheAllreduceBitForBit) {
  const int size = 2, steps = 3;
  const int64_t rows = 37, cols = 29, n = rows * cols;
  PowerSgdOptions opt;
  opt.rank = 3;
  opt.seed = 11;
  std::vector<std::vector<Matrix>> want(size, std::vector<Matrix>(steps));
  test::spawnRanks(size, [&](int w, Communicator& c) {
    PowerSgdState state("fc.weight", rows, cols);
    for (int t = 0; t < steps; ++t) {
      want[w][t] = gaussian(n, 100 * w + t);
      powerSgdAllreduce(c, state, want[w][t].data(), rows, cols, opt);
    }
  });
  std::vector<PowerSgdState> states(size, PowerSgdState("fc.weight", rows, cols));
  auto sumOver = [&](std::vector<std::vector<float>*> parts) {
    for (size_t i = 0; i < parts[0]->size(); ++i) {
      const float s = (*parts[0])[i] + (*parts[1])[i];
      (*parts[0])[i] = s;
      (*parts[1])[i] = s;
    }
  };
  for (int t = 0; t < steps; ++t) {
    std::vector<Matrix> g(size);
    std::vector<std::vector<float>*> ps, qs;
    for (int w = 0; w < size; ++w) {
      g[w] = gaussian(n, 100 * w + t);
      ps.push_back(&powerSgdLocalP(states[w], g[w].data(), opt));
    }
    sumOver(ps);
    for (int w = 0; w < size; ++w) qs.push_back(&powerSgdLocalQ(states[w], g[w].data()));
    sumOver(qs);
    for (int w = 0; w < size; ++w) {
      powerSgdFinish(states[w], g[w].data(), size, opt);
      ASSERT_EQ(std::memcmp(g[w].data(), want[w][t].data(), n * 4), 0)
          << "rank " << w << " step " << t;
    }
  }
}

TEST(PowerSgd, ThePhasesRefuseATensorThatDoesNotCompressNamingIt) {
  PowerSgdState state("fc.bias", 3, 3);
  Matrix g(9, 1.0f);
  PowerSgdOptions opt;
  opt.rank = 2;
  EXPECT_THAT([&] { powerSgdLocalP(state, g.data(), opt); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr("fc.bias"), HasSubstr("rank 2"))));
  EXPECT_THAT([&] { powerSgdLocalQ(state, g.data()); },
              ::testing::ThrowsMessage<Error>(HasSubstr("before P")));
}

// A full-rank gradient repeated every step: with error feedback what the low-rank steps miss is
// sent later, so the mean of the outputs tends to the true average; without it the part outside
// the top singular directions is lost for good.
TEST(PowerSgd, ErrorFeedbackMakesTheRunningMeanConverge) {
  const int size = 2, steps = 300;
  const int64_t rows = 24, cols = 20, n = rows * cols;
  Matrix want(n);
  const Matrix g0 = gaussian(n, 1), g1 = gaussian(n, 2);
  for (int64_t i = 0; i < n; ++i) want[i] = 0.5f * (g0[i] + g1[i]);
  for (bool feedback : {true, false}) {
    Matrix mean(n, 0.0f);
    test::spawnRanks(size, [&](int w, Communicator& c) {
      PowerSgdState state("fc.weight", rows, cols);
      PowerSgdOptions opt;
      opt.rank = 2;
      opt.errorFeedback = feedback;
      std::vector<double> sum(n, 0.0);
      for (int t = 0; t < steps; ++t) {
        Matrix g = w == 0 ? g0 : g1;
        powerSgdAllreduce(c, state, g.data(), rows, cols, opt);
        for (int64_t i = 0; i < n; ++i) sum[i] += g[i];
      }
      if (w == 0) {
        for (int64_t i = 0; i < n; ++i) mean[i] = static_cast<float>(sum[i] / steps);
      }
    });
    if (feedback) {
      EXPECT_LT(relativeError(mean, want), 0.05) << "with error feedback";
    } else {
      EXPECT_GT(relativeError(mean, want), 0.3) << "without error feedback";
    }
  }
}

TEST(PowerSgd, CompressesOnlyMatricesWhoseFactorsAreSmaller) {
  EXPECT_TRUE(powerSgdCompresses(64, 48, 4));
  EXPECT_TRUE(powerSgdCompresses(8, 8, 3));      // 16 * 3 = 48 < 64
  EXPECT_FALSE(powerSgdCompresses(8, 8, 4));     // 16 * 4 = 64: no gain
  EXPECT_FALSE(powerSgdCompresses(1000, 1, 1));  // a vector
  EXPECT_FALSE(powerSgdCompresses(1, 1000, 1));
  EXPECT_FALSE(powerSgdCompresses(0, 10, 1));
  EXPECT_FALSE(powerSgdCompresses(5, 5, 5));
  EXPECT_FALSE(powerSgdCompresses(64, 48, 0));
}

TEST(PowerSgd, SmallAndVectorTensorsEqualThePlainAverage) {
  const int size = 3;
  struct Shape {
    int64_t rows, cols;
  };
  for (Shape s : {Shape{1000, 1}, Shape{1, 77}, Shape{8, 8}, Shape{0, 5}}) {
    const int64_t n = s.rows * s.cols;
    std::vector<Matrix> out(size);
    std::vector<AllreduceStats> stats(size);
    test::spawnRanks(size, [&](int w, Communicator& c) {
      PowerSgdState state("bias", s.rows, s.cols);
      PowerSgdOptions opt;
      opt.rank = 4;
      out[w] = gaussian(n, 10 + w);
      powerSgdAllreduce(c, state, out[w].data(), s.rows, s.cols, opt, &stats[w]);
      EXPECT_TRUE(state.residual().empty());
      EXPECT_EQ(state.rank(), 0);
    });
    for (int64_t i = 0; i < n; ++i) {
      double want = 0;
      for (int w = 0; w < size; ++w) want += gaussian(n, 10 + w)[i];
      want /= size;
      ASSERT_NEAR(out[0][i], want, 1e-6) << s.rows << "x" << s.cols << " element " << i;
    }
    EXPECT_EQ(stats[0].wireBytes, stats[0].fp32Bytes);
    EXPECT_EQ(stats[0].fp32Bytes, static_cast<uint64_t>(2.0 * 2 / 3 * 4 * n));
  }
}

TEST(PowerSgd, StatsCountWhatARingAllreduceOfTheFactorsSends) {
  const int size = 4, r = 4;
  const int64_t rows = 64, cols = 48;
  std::vector<AllreduceStats> stats(size);
  test::spawnRanks(size, [&](int w, Communicator& c) {
    PowerSgdState state("fc.weight", rows, cols);
    PowerSgdOptions opt;
    opt.rank = r;
    Matrix g = gaussian(rows * cols, w);
    powerSgdAllreduce(c, state, g.data(), rows, cols, opt, &stats[w]);
  });
  // 2 (W-1)/W of 4 bytes per float: 6 bytes per float at W = 4.
  EXPECT_EQ(stats[0].wireBytes, static_cast<uint64_t>(6 * r * rows + 6 * r * cols));
  EXPECT_EQ(stats[0].fp32Bytes, static_cast<uint64_t>(6 * rows * cols));
  EXPECT_GE(stats[0].encodeSeconds, 0.0);
  EXPECT_GE(stats[0].commSeconds, 0.0);
  EXPECT_GE(stats[0].decodeSeconds, 0.0);
}

TEST(PowerSgd, SumIsTheAverageTimesTheNumberOfRanks) {
  const int size = 2;
  const int64_t rows = 30, cols = 20, n = rows * cols;
  std::vector<Matrix> avg(size), sum(size);
  test::spawnRanks(size, [&](int w, Communicator& c) {
    PowerSgdState a("w", rows, cols), b("w", rows, cols);
    PowerSgdOptions opt;
    opt.rank = 2;
    avg[w] = sum[w] = gaussian(n, 5 + w);
    powerSgdAllreduce(c, a, avg[w].data(), rows, cols, opt);
    opt.average = false;
    powerSgdAllreduce(c, b, sum[w].data(), rows, cols, opt);
    EXPECT_EQ(a.residual(), b.residual()) << "the residual does not depend on averaging";
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(sum[0][i], avg[0][i] * 2.0f) << i;
}

// A checkpoint taken mid-training must resume exactly where it left off.
TEST(PowerSgd, RestoredStateContinuesBitIdentically) {
  const int size = 2, r = 3;
  const int64_t rows = 40, cols = 33, n = rows * cols;
  for (bool viaBytes : {true, false}) {
    std::vector<std::vector<Matrix>> first(size), second(size);
    test::spawnRanks(size, [&](int w, Communicator& c) {
      PowerSgdOptions opt;
      opt.rank = r;
      PowerSgdState state("layer3.weight", rows, cols);
      for (int t = 0; t < 3; ++t) {
        Matrix g = gaussian(n, 50 * w + t);
        powerSgdAllreduce(c, state, g.data(), rows, cols, opt);
      }
      const Bytes bytes = state.toBytes();
      const PowerSgdSnapshot snap = state.snapshot();
      for (int t = 3; t < 6; ++t) {
        first[w].push_back(gaussian(n, 50 * w + t));
        powerSgdAllreduce(c, state, first[w].back().data(), rows, cols, opt);
      }
      PowerSgdState resumed("layer3.weight", rows, cols);
      if (viaBytes) {
        resumed.fromBytes(bytes);
      } else {
        resumed.restore(snap);
      }
      EXPECT_EQ(resumed.toBytes(), bytes);
      for (int t = 3; t < 6; ++t) {
        second[w].push_back(gaussian(n, 50 * w + t));
        powerSgdAllreduce(c, resumed, second[w].back().data(), rows, cols, opt);
      }
    });
    for (int w = 0; w < size; ++w) {
      for (int t = 0; t < 3; ++t) {
        ASSERT_EQ(std::memcmp(first[w][t].data(), second[w][t].data(), n * 4), 0)
            << "rank " << w << " step " << t << (viaBytes ? " (bytes)" : " (snapshot)");
      }
    }
  }
}

std::string restoreError(PowerSgdState& state, const PowerSgdSnapshot& s) {
  try {
    state.restore(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(PowerSgd, RestoreRejectsAMismatchedStateNamingTheTensor) {
  PowerSgdState state("encoder.fc1.weight", 64, 48);
  test::spawnRanks(1, [&](int, Communicator& c) {
    Matrix g = gaussian(64 * 48, 3);
    PowerSgdOptions opt;
    opt.rank = 4;
    powerSgdAllreduce(c, state, g.data(), 64, 48, opt);
  });
  const Bytes before = state.toBytes();
  const PowerSgdSnapshot good = state.snapshot();

  PowerSgdState other("encoder.fc2.weight", 32, 48);
  EXPECT_THAT(restoreError(state, other.snapshot()),
              AllOf(HasSubstr("encoder.fc1.weight"), HasSubstr("32x48"), HasSubstr("64x48")));
  PowerSgdSnapshot s = good;
  s.q.resize(3 * 48);
  EXPECT_THAT(restoreError(state, s), AllOf(HasSubstr("encoder.fc1.weight"), HasSubstr("rank 4")));
  s = good;
  s.rank = 30;  // (64 + 48) * 30 >= 64 * 48
  s.q.resize(30 * 48);
  EXPECT_THAT(restoreError(state, s), HasSubstr("rank 30"));
  s = good;
  s.residual.resize(10);
  EXPECT_THAT(restoreError(state, s), HasSubstr("residual"));
  s = good;
  s.q[5] = std::nanf("");
  EXPECT_THAT(restoreError(state, s), HasSubstr("element 5"));
  EXPECT_EQ(state.toBytes(), before) << "a failed restore leaves the state as it was";

  Bytes damaged = before;
  damaged[100] ^= 1;
  EXPECT_THAT([&] { state.fromBytes(damaged); },
              ::testing::ThrowsMessage<Error>(HasSubstr("checksum")));
  Bytes truncated(before.begin(), before.end() - 4);
  EXPECT_THAT([&] { state.fromBytes(truncated); },
              ::testing::ThrowsMessage<Error>(HasSubstr("encoder.fc1.weight")));
  EXPECT_THAT([&] { state.fromBytes(nullptr, 0); }, ::testing::Throws<Error>());
  EXPECT_EQ(state.toBytes(), before);
}

TEST(PowerSgd, RejectsAGradientOfAnotherShapeNamingTheTensor) {
  test::spawnRanks(1, [&](int, Communicator& c) {
    PowerSgdState state("head.weight", 10, 8);
    Matrix g(80);
    EXPECT_THAT([&] { powerSgdAllreduce(c, state, g.data(), 8, 10); },
                ::testing::ThrowsMessage<Error>(HasSubstr("head.weight")));
  });
}

// Zero gradients (frozen layers, masked steps) and rank-deficient ones must never produce NaN, and
// PowerSGD must recover once real gradients arrive.
TEST(PowerSgd, ZeroAndRankDeficientGradientsGiveFiniteExactResults) {
  const int size = 2, r = 4;
  const int64_t rows = 64, cols = 48, n = rows * cols;
  const Matrix rank1 = lowRank(rows, cols, 1, 11), rank4 = lowRank(rows, cols, r, 12);
  std::vector<Matrix> out(size);
  test::spawnRanks(size, [&](int w, Communicator& c) {
    PowerSgdState state("fc.weight", rows, cols);
    PowerSgdOptions opt;
    opt.rank = r;
    for (int t = 0; t < 3; ++t) {
      Matrix g(n, 0.0f);
      powerSgdAllreduce(c, state, g.data(), rows, cols, opt);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(g[i], 0.0f) << "step " << t << " element " << i;
      ASSERT_TRUE(allFinite(state.q()));
    }
    for (int t = 0; t < 2; ++t) {
      Matrix g = rank1;
      powerSgdAllreduce(c, state, g.data(), rows, cols, opt);
      ASSERT_TRUE(allFinite(g));
      EXPECT_LT(relativeError(g, rank1), 1e-4) << "rank-1 input, step " << t;
    }
    for (int t = 0; t < 2; ++t) {
      out[w] = rank4;
      powerSgdAllreduce(c, state, out[w].data(), rows, cols, opt);
    }
  });
  EXPECT_LT(relativeError(out[0], rank4), 1e-4);
}

TEST(PowerSgd, ANonFiniteGradientOnOneRankMakesEveryRankThrow) {
  const int size = 3;
  const int64_t rows = 20, cols = 16;
  test::spawnRanks(size, [&](int w, Communicator& c) {
    PowerSgdState state("blocks.4.mlp.weight", rows, cols);
    Matrix g = gaussian(rows * cols, w);
    if (w == 1) g[17] = std::numeric_limits<float>::infinity();
    PowerSgdOptions opt;
    opt.rank = 2;
    EXPECT_THAT([&] { powerSgdAllreduce(c, state, g.data(), rows, cols, opt); },
                ::testing::ThrowsMessage<Error>(HasSubstr("blocks.4.mlp.weight")));
    // The state survives: the next step runs normally.
    g = gaussian(rows * cols, w);
    powerSgdAllreduce(c, state, g.data(), rows, cols, opt);
    EXPECT_TRUE(allFinite(g));
  });
}

// A rate planner may move a tensor to another rank between steps; what the old rank missed stays
// in the residual and goes out at the new one.
TEST(PowerSgd, ChangingTheRankKeepsTheResidualAndDeliversIt) {
  const int64_t rows = 50, cols = 40, n = rows * cols;
  const Matrix a = lowRank(rows, cols, 2, 21);
  test::spawnRanks(2, [&](int, Communicator& c) {
    PowerSgdState state("fc.weight", rows, cols);
    PowerSgdOptions opt;
    opt.rank = 1;
    Matrix first = a;
    powerSgdAllreduce(c, state, first.data(), rows, cols, opt);
    EXPECT_GT(relativeError(first, a), 0.01) << "rank 1 cannot hold a rank-2 matrix";
    opt.rank = 2;
    Matrix second(n, 0.0f);
    powerSgdAllreduce(c, state, second.data(), rows, cols, opt);
    EXPECT_EQ(state.rank(), 2);
    EXPECT_EQ(state.q().size(), static_cast<size_t>(2 * cols));
    Matrix both(n);
    for (int64_t i = 0; i < n; ++i) both[i] = first[i] + second[i];
    EXPECT_LT(relativeError(both, a), 1e-4);
  });
}

}  // namespace
}  // namespace cdl::comm
