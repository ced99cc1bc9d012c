#include "kernels/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace cdl::kernels {
namespace {

// Reference: the nearest fp16 value by exhaustive search over all finite halves (ties to even).
float nearestHalfByValue(float x, const std::vector<float>& halves) {
  float best = 0.0f;
  double bestErr = INFINITY;
  for (float h : halves) {
    const double err = std::fabs(double(h) - double(x));
    if (err < bestErr) {
      bestErr = err;
      best = h;
    }
  }
  return best;
}

TEST(Half, EveryHalfRoundTripsExactly) {
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> f(65536);
  halfToFloat(all.data(), 65536, f.data(), false);
  std::vector<uint16_t> back(65536);
  floatToHalf(f.data(), 65536, back.data());
  for (int i = 0; i < 65536; ++i) {
    const bool nan = ((i >> 10) & 0x1f) == 0x1f && (i & 0x3ff);
    if (nan) {
      EXPECT_TRUE(std::isnan(f[i]));
      EXPECT_EQ(back[i] & 0x7c00, 0x7c00);
    } else {
      ASSERT_EQ(back[i], i) << "half 0x" << std::hex << i;
    }
  }
}

TEST(Half, FloatToHalfRoundsToTheNearestHalf) {
  std::vector<float> halves;
  for (int i = 0; i < 0x7c00; ++i) {
    uint16_t h = static_cast<uint16_t>(i);
    float f;
    halfToFloat(&h, 1, &f, false);
    halves.push_back(f);
  }
  std::mt19937 rng(3);
  std::vector<float> x;
  for (int i = 0; i < 3000; ++i) {
    x.push_back(std::ldexp(std::uniform_real_distribution<float>(1.0f, 2.0f)(rng),
                           static_cast<int>(rng() % 40) - 26));
  }
  std::vector<uint16_t> h(x.size());
  floatToHalf(x.data(), static_cast<int64_t>(x.size()), h.data());  // vector path and tail
  for (size_t i = 0; i < x.size(); ++i) {
    float got;
    halfToFloat(&h[i], 1, &got, false);
    const float want = nearestHalfByValue(x[i], halves);
    if (x[i] > 65504.0f) continue;
    ASSERT_EQ(std::fabs(got - x[i]), std::fabs(want - x[i])) << x[i];
  }
}

TEST(Half, OverflowBecomesInfinityAndSignIsKept) {
  const float x[3] = {1e6f, -1e6f, -0.0f};
  uint16_t h[3];
  floatToHalf(x, 3, h);
  EXPECT_EQ(h[0], 0x7c00);
  EXPECT_EQ(h[1], 0xfc00);
  EXPECT_EQ(h[2], 0x8000);
}

TEST(Half, Bf16RoundsToNearestEvenAndAccumulates) {
  const float x[4] = {1.0f, 1.0f + 0x1.0p-8f, 1.0f + 0x1.8p-8f, -3.5f};
  uint16_t b[4];
  floatToBf16(x, 4, b);
  EXPECT_EQ(b[0], 0x3f80);
  EXPECT_EQ(b[1], 0x3f80);  // exactly halfway: to even
  EXPECT_EQ(b[2], 0x3f81);  // above halfway: up one ulp (2^-7)
  float y[4] = {1, 1, 1, 1};
  bf16ToFloat(b, 4, y, true);
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(y[3], -2.5f);
}

TEST(Half, FirstNonFiniteFindsTheFirstBadElement) {
  std::vector<float> x(1000, 1.5f);
  x[10] = -7.0f;
  float m = 0;
  EXPECT_EQ(firstNonFinite(x.data(), 1000, &m), -1);
  EXPECT_EQ(m, 7.0f);
  x[500] = NAN;
  x[700] = INFINITY;
  EXPECT_EQ(firstNonFinite(x.data(), 1000, &m), 500);
  EXPECT_EQ(m, 7.0f);
  EXPECT_EQ(firstNonFinite(nullptr, 0, &m), -1);
  EXPECT_EQ(m, 0.0f);
}

}  // namespace
}  // namespace cdl::kernels
