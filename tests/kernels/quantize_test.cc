#include "kernels/quantize.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/base/cpu_dispatch.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::kernels {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kSizes[] = {0, 1, 7, 1000};
constexpr int64_t kBuckets[] = {1, 64, 5000};
constexpr Rounding kRoundings[] = {Rounding::kNearest, Rounding::kStochastic};

std::vector<float> gradientLike(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = (rng() % 8 == 0 ? 10.0f : 0.01f) * normal(rng);
  return x;
}

std::vector<float> uniformData(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = uni(rng);
  return x;
}

double intervalsOf(int bits) { return bits == 1 ? 1.0 : double((1 << bits) - 2); }

struct Quantized {
  std::vector<uint8_t> sym;
  std::vector<float> scales;
  std::vector<float> dq;
};

Quantized roundTrip(const std::vector<float>& x, const QuantizeParams& p) {
  const int64_t n = static_cast<int64_t>(x.size());
  Quantized q;
  q.sym.assign(x.size(), 0xee);
  q.scales.assign(static_cast<size_t>(numBuckets(n, p.bucket)), -1.0f);
  q.dq.assign(x.size(), 12345.0f);
  quantize(x.data(), n, p, q.sym.data(), q.scales.data());
  dequantize(q.sym.data(), q.scales.data(), n, p.bits, p.bucket, q.dq.data(), false);
  return q;
}

// max |x| over each bucket, in double.
std::vector<double> bucketMax(const std::vector<float>& x, int64_t bucket) {
  std::vector<double> m;
  for (size_t start = 0; start < x.size(); start += static_cast<size_t>(bucket)) {
    double mx = 0.0;
    const size_t end = std::min(x.size(), start + static_cast<size_t>(bucket));
    for (size_t i = start; i < end; ++i) mx = std::max(mx, std::fabs(double(x[i])));
    m.push_back(mx);
  }
  return m;
}

TEST(QuantizeTest, IntervalsAndBucketCountsFollowTheNote) {
  EXPECT_EQ(quantIntervals(1), 1u);
  EXPECT_EQ(quantIntervals(2), 2u);
  EXPECT_EQ(quantIntervals(4), 14u);
  EXPECT_EQ(quantIntervals(8), 254u);
  EXPECT_EQ(numBuckets(0, 16), 0);
  EXPECT_EQ(numBuckets(1, 16), 1);
  EXPECT_EQ(numBuckets(16, 16), 1);
  EXPECT_EQ(numBuckets(17, 16), 2);
  EXPECT_EQ(numBuckets(7, 1), 7);
  EXPECT_EQ(numBuckets(int64_t{1} << 40, 3), ((int64_t{1} << 40) + 2) / 3);
}

TEST(QuantizeTest, ScalesAreBucketMaxIncludingTheShortLastBucket) {
  const auto x = gradientLike(1000, 1);
  for (int64_t bucket : kBuckets) {
    QuantizeParams p;
    p.bucket = bucket;
    const auto q = roundTrip(x, p);
    const auto m = bucketMax(x, bucket);
    ASSERT_EQ(q.scales.size(), m.size());
    for (size_t b = 0; b < m.size(); ++b) EXPECT_EQ(double(q.scales[b]), m[b]) << b;
  }
}

TEST(QuantizeTest, SymbolsStayBelowTwoToTheBitsAndTheLastPoint) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : kSizes) {
      for (int64_t bucket : kBuckets) {
        for (Rounding r : kRoundings) {
          QuantizeParams p{bits, bucket, r, 99};
          const auto q = roundTrip(gradientLike(n, bits * 7 + n), p);
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_LT(q.sym[i], 1u << bits) << "bits " << bits << " bucket " << bucket;
            ASSERT_LE(q.sym[i], quantIntervals(bits));
          }
        }
      }
    }
  }
}

// Nearest rounding errs by at most half a step, stochastic by less than one step, where the step
// is 2m / L of the element's bucket; a relative slack of 1e-5 covers fp32 rounding.
TEST(QuantizeTest, ErrorPerElementIsWithinHalfAStepNearestAndOneStepStochastic) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : kSizes) {
      for (int64_t bucket : kBuckets) {
        for (Rounding r : kRoundings) {
          const auto x = gradientLike(n, 1000 + bits + n);
          const auto q = roundTrip(x, QuantizeParams{bits, bucket, r, 7});
          const auto m = bucketMax(x, bucket);
          const double factor = r == Rounding::kNearest ? 0.5 : 1.0;
          for (int64_t i = 0; i < n; ++i) {
            const double step = 2.0 * m[i / bucket] / intervalsOf(bits);
            ASSERT_LE(std::fabs(double(x[i]) - q.dq[i]), factor * step * (1 + 1e-5))
                << "element " << i << " bits " << bits << " bucket " << bucket << " rounding "
                << int(r);
          }
        }
      }
    }
  }
}

TEST(QuantizeTest, NearestRoundsTiesUp) {
  // Two bits: the points are -1, 0 and 1 (m = 1), so +-0.5 are exact ties.
  const std::vector<float> x = {1.0f, 0.5f, -0.5f, 0.49f, -0.51f, 0.0f, -1.0f, 0.51f};
  const auto q = roundTrip(x, QuantizeParams{2, 8, Rounding::kNearest, 0});
  EXPECT_THAT(q.sym, ::testing::ElementsAre(2, 2, 1, 1, 0, 1, 0, 2));
  EXPECT_THAT(q.dq, ::testing::ElementsAre(1.0f, 1.0f, 0.0f, 0.0f, -1.0f, 0.0f, -1.0f, 1.0f));
}

TEST(QuantizeTest, ExtremesAndZeroDequantizeExactly) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (Rounding r : kRoundings) {
      const std::vector<float> x = {0.3f, -3.7f, 0.0f, 3.7f, -1.1f, 0.0f};
      const auto q = roundTrip(x, QuantizeParams{bits, 6, r, 5});
      EXPECT_EQ(q.dq[1], -3.7f) << bits;
      EXPECT_EQ(q.dq[3], 3.7f) << bits;
      if (bits >= 2) {
        EXPECT_EQ(q.sym[2], quantIntervals(bits) / 2) << bits;
        EXPECT_EQ(q.dq[2], 0.0f) << bits;
        EXPECT_EQ(q.dq[5], 0.0f) << bits;
      }
    }
  }
}

TEST(QuantizeTest, BucketOfOneIsLossless) {
  const auto x = gradientLike(1000, 3);
  for (int bits = 1; bits <= 8; ++bits) {
    const auto q = roundTrip(x, QuantizeParams{bits, 1, Rounding::kStochastic, 11});
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(q.dq[i], x[i]) << i << " bits " << bits;
  }
}

TEST(QuantizeTest, QuantizingDequantizedValuesGivesTheSameSymbolsAndScales) {
  const auto x = gradientLike(1000, 4);
  for (int bits = 1; bits <= 8; ++bits) {
    for (Rounding r : kRoundings) {
      const auto q = roundTrip(x, QuantizeParams{bits, 64, r, 3});
      const auto again = roundTrip(q.dq, QuantizeParams{bits, 64, Rounding::kNearest, 0});
      ASSERT_EQ(again.sym, q.sym) << "bits " << bits;
      ASSERT_EQ(again.scales, q.scales) << "bits " << bits;
      ASSERT_EQ(again.dq, q.dq) << "bits " << bits;
    }
  }
}

TEST(QuantizeTest, AllZeroBucketsGiveTheZeroSymbolAndExactPositiveZeros) {
  std::vector<float> x = gradientLike(300, 5);
  std::fill(x.begin() + 100, x.begin() + 200, 0.0f);
  std::fill(x.begin() + 150, x.begin() + 160, -0.0f);
  for (int bits = 1; bits <= 8; ++bits) {
    for (Rounding r : kRoundings) {
      const auto q = roundTrip(x, QuantizeParams{bits, 100, r, 8});
      EXPECT_EQ(q.scales[1], 0.0f);
      for (int i = 100; i < 200; ++i) {
        ASSERT_EQ(q.sym[i], quantIntervals(bits) / 2) << i;
        ASSERT_EQ(q.dq[i], 0.0f) << i;
        ASSERT_FALSE(std::signbit(q.dq[i])) << i;
      }
    }
  }
}

TEST(QuantizeTest, ExtremeMagnitudesStayFiniteAndWithinTheBound) {
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float huge = std::numeric_limits<float>::max();
  const std::vector<std::vector<float>> cases = {{tiny, -tiny, 0.0f, tiny},
                                                 {3 * tiny, -2 * tiny, tiny, 1e-42f},
                                                 {huge, -huge, huge / 3, -huge / 7, 0.0f, 1.0f},
                                                 {1e-30f, -3e-31f, 7e-31f},
                                                 {2e30f, -1e30f, 3e29f}};
  for (const auto& x : cases) {
    for (int bits = 1; bits <= 8; ++bits) {
      for (Rounding r : kRoundings) {
        const auto q = roundTrip(x, QuantizeParams{bits, 1024, r, 13});
        const double m = bucketMax(x, 1024)[0];
        const double step = 2.0 * m / intervalsOf(bits);
        const double factor = r == Rounding::kNearest ? 0.5 : 1.0;
        for (size_t i = 0; i < x.size(); ++i) {
          ASSERT_TRUE(std::isfinite(q.dq[i])) << i;
          // Subnormal results carry an absolute error of up to half the smallest subnormal.
          ASSERT_LE(std::fabs(double(x[i]) - q.dq[i]), factor * step * (1 + 1e-5) + tiny)
              << "element " << i << " of value " << x[i] << " bits " << bits;
        }
      }
    }
  }
}

TEST(QuantizeTest, StochasticRoundingIsUnbiased) {
  // One bucket of 3 bits (step 2/6 for m = 1) with positions at assorted fractions.
  std::vector<float> x = {1.0f, 0.05f, -0.2f, 0.1f, 0.9f, -0.77f, 0.333f, 0.0001f, -0.4999f};
  const int bits = 3;
  const double step = 2.0 / intervalsOf(bits);
  const int kDraws = 4000;
  std::vector<double> sum(x.size(), 0.0);
  for (int k = 0; k < kDraws; ++k) {
    const auto q = roundTrip(x, QuantizeParams{bits, 64, Rounding::kStochastic,
                                               roundingKey(42, static_cast<uint64_t>(k), 0)});
    for (size_t i = 0; i < x.size(); ++i) sum[i] += q.dq[i];
  }
  for (size_t i = 0; i < x.size(); ++i) {
    // A draw is one of two points a step apart, taken with p and 1 - p.
    const double pos = (x[i] + 1.0) / step;
    const double p = pos - std::floor(pos);
    const double sigma = step * std::sqrt(p * (1 - p) / kDraws);
    EXPECT_NEAR(sum[i] / kDraws, x[i], 5 * sigma + 1e-6) << "element " << i;
  }
}

TEST(QuantizeTest, StochasticDrawOfElementIUsesUniform01OfKeyAndI) {
  const auto x = uniformData(1000, 6);
  const uint64_t key = roundingKey(1, 2, 3);
  const int bits = 4;
  const auto q = roundTrip(x, QuantizeParams{bits, 100, Rounding::kStochastic, key});
  const auto m = bucketMax(x, 100);
  int checked = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double pos = (x[i] + m[i / 100]) * intervalsOf(bits) / (2 * m[i / 100]);
    const double lo = std::floor(pos);
    const double frac = pos - lo;
    if (frac < 1e-3 || frac > 1 - 1e-3) continue;
    const double u = uniform01(key, i);
    if (std::fabs(u - frac) < 1e-4) continue;
    ASSERT_EQ(q.sym[i], lo + (u < frac ? 1 : 0)) << "element " << i;
    ++checked;
  }
  EXPECT_GT(checked, 900);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The AVX2 and AVX-512 paths give the baseline loop's symbols and scales bit for bit, on lengths
// that leave every kind of tail and on all-zero buckets.
TEST(QuantizeTest, EveryCpuPathGivesTheBaselineBits) {
  struct Restore {
    ~Restore() { cpuLevelCap().store(static_cast<int>(CpuLevel::kAvx512)); }
  } restore;
  const int detected = static_cast<int>(detectedCpuLevel());
  if (detected == 0) GTEST_SKIP() << "this CPU has no AVX2: only the baseline path exists";
  auto x = gradientLike(70013, 11);
  std::fill(x.begin() + 2048, x.begin() + 3072, 0.0f);
  for (int bits : {2, 4, 8}) {
    for (int64_t bucket : {int64_t{1}, int64_t{63}, int64_t{1024}, int64_t{5000}}) {
      for (Rounding r : kRoundings) {
        const QuantizeParams p{bits, bucket, r, roundingKey(5, 6, 7)};
        cpuLevelCap().store(0);
        const auto want = roundTrip(x, p);
        for (int level = 1; level <= detected; ++level) {
          cpuLevelCap().store(level);
          const auto got = roundTrip(x, p);
          ASSERT_EQ(got.sym, want.sym) << "level " << level << " bits " << bits << " bucket "
                                       << bucket << " stochastic " << (r == Rounding::kStochastic);
          ASSERT_EQ(got.scales, want.scales) << "level " << level;
        }
      }
    }
  }
}
#endif

TEST(QuantizeTest, SameKeyReproducesAndDifferentKeysDiffer) {
  const auto x = uniformData(1000, 7);
  const auto a = roundTrip(x, QuantizeParams{4, 128, Rounding::kStochastic, 1});
  const auto b = roundTrip(x, QuantizeParams{4, 128, Rounding::kStochastic, 1});
  const auto c = roundTrip(x, QuantizeParams{4, 128, Rounding::kStochastic, 2});
  EXPECT_EQ(a.sym, b.sym);
  EXPECT_EQ(a.dq, b.dq);
  int differ = 0;
  for (size_t i = 0; i < x.size(); ++i) differ += a.sym[i] != c.sym[i];
  EXPECT_GT(differ, 100);
}

TEST(QuantizeTest, DequantizeAccumulateAddsToTheOutput) {
  const auto x = gradientLike(1000, 8);
  const auto q = roundTrip(x, QuantizeParams{5, 100, Rounding::kNearest, 0});
  std::vector<float> out = gradientLike(1000, 9);
  const std::vector<float> before = out;
  dequantize(q.sym.data(), q.scales.data(), 1000, 5, 100, out.data(), true);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], before[i] + q.dq[i]) << i;
}

TEST(QuantizeTest, DequantizeClampsSymbolsAboveTheLastPoint) {
  const std::vector<uint8_t> sym = {0, 14, 15, 255};
  const std::vector<float> scales = {2.0f};
  std::vector<float> out(4);
  dequantize(sym.data(), scales.data(), 4, 4, 8, out.data(), false);
  EXPECT_THAT(out, ::testing::ElementsAre(-2.0f, 2.0f, 2.0f, 2.0f));
}

void expectQuantizeError(const std::vector<float>& x, const std::string& what) {
  std::vector<uint8_t> sym(x.size());
  std::vector<float> scales(x.size());
  QuantizeParams p{4, 16, Rounding::kNearest, 0};
  try {
    quantize(x.data(), static_cast<int64_t>(x.size()), p, sym.data(), scales.data());
    ADD_FAILURE() << "no error for " << what;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(what));
  }
}

TEST(QuantizeTest, NanAndInfinityThrowNamingTheFirstBadElement) {
  auto x = gradientLike(100, 10);
  x[37] = std::numeric_limits<float>::quiet_NaN();
  x[80] = std::numeric_limits<float>::infinity();
  expectQuantizeError(x, "element 37 is nan");
  x[37] = 1.0f;
  expectQuantizeError(x, "element 80 is inf");
  x[80] = -std::numeric_limits<float>::infinity();
  expectQuantizeError(x, "element 80 is -inf");
  x[80] = 0.0f;
  x[0] = std::numeric_limits<float>::quiet_NaN();
  expectQuantizeError(x, "element 0 is nan");
}

TEST(QuantizeTest, InvalidParametersThrow) {
  std::vector<float> x(8, 1.0f);
  std::vector<uint8_t> sym(8);
  std::vector<float> scales(8);
  auto run = [&](int bits, int64_t bucket, int64_t n, const float* xp, uint8_t* sp, float* cp) {
    quantize(xp, n, QuantizeParams{bits, bucket, Rounding::kNearest, 0}, sp, cp);
  };
  EXPECT_THROW(run(0, 4, 8, x.data(), sym.data(), scales.data()), Error);
  EXPECT_THROW(run(9, 4, 8, x.data(), sym.data(), scales.data()), Error);
  EXPECT_THROW(run(4, 0, 8, x.data(), sym.data(), scales.data()), Error);
  EXPECT_THROW(run(4, 4, -1, x.data(), sym.data(), scales.data()), Error);
  EXPECT_THROW(run(4, 4, 8, nullptr, sym.data(), scales.data()), Error);
  EXPECT_THROW(run(4, 4, 8, x.data(), nullptr, scales.data()), Error);
  EXPECT_THROW(run(4, 4, 8, x.data(), sym.data(), nullptr), Error);
  EXPECT_NO_THROW(run(4, 4, 0, nullptr, nullptr, nullptr));
  EXPECT_THROW(quantize(x.data(), 8, QuantizeParams{4, 4, static_cast<Rounding>(7), 0}, sym.data(),
                        scales.data()),
               Error);
  EXPECT_THROW(dequantize(sym.data(), scales.data(), 8, 0, 4, x.data(), false), Error);
  EXPECT_THROW(dequantize(sym.data(), scales.data(), 8, 4, 0, x.data(), false), Error);
  EXPECT_THROW(dequantize(nullptr, scales.data(), 8, 4, 4, x.data(), false), Error);
  EXPECT_NO_THROW(dequantize(nullptr, nullptr, 0, 4, 4, nullptr, true));
  try {
    run(12, 4, 8, x.data(), sym.data(), scales.data());
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bits = 12"));
  }
}

}  // namespace
}  // namespace cdl::kernels
