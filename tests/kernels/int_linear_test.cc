#include "kernels/int_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace cdl::kernels {
namespace {

std::vector<int16_t> randomLevels(int64_t n, int lo, int hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int16_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int16_t>(d(rng));
  return v;
}

// Every output count around the four-row blocks, inputs from none to several hundred.
TEST(IntegerLinear, SumsEqualAnInt64Reference) {
  for (int64_t out : {1, 3, 4, 5, 9}) {
    for (int64_t in : {0, 1, 33, 300}) {
      const int64_t batch = 6;
      const auto w = randomLevels(out * in, -128, 127, 1 + out);
      const auto a = randomLevels(batch * in, 0, 255, 2 + in);
      std::vector<int32_t> s(static_cast<size_t>(batch * out), -1);
      integerLinear(a.data(), batch, w.data(), out, in, s.data());
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t m = 0; m < out; ++m) {
          int64_t ref = 0;
          for (int64_t k = 0; k < in; ++k) ref += int64_t{a[b * in + k]} * w[m * in + k];
          ASSERT_EQ(s[b * out + m], ref) << "out " << out << " in " << in;
        }
      }
    }
  }
}

// A coded stream yields the weight in pieces of any length; the sums are the same integers.
TEST(IntegerLinear, PiecesOfTheWeightGiveTheSameSums) {
  const int64_t out = 7, in = 45, batch = 5, lo = -2;
  const auto w = randomLevels(out * in, -2, 1, 11);
  const auto a = randomLevels(batch * in, 0, 15, 12);
  std::vector<int32_t> whole(static_cast<size_t>(batch * out));
  integerLinear(a.data(), batch, w.data(), out, in, whole.data());
  std::vector<uint8_t> sym(w.size());
  for (size_t i = 0; i < w.size(); ++i) sym[i] = static_cast<uint8_t>(w[i] - lo);
  std::vector<int16_t> at(a.size());
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k = 0; k < in; ++k) at[k * batch + b] = a[b * in + k];
  }
  for (int64_t piece : {1, 7, 1000}) {
    std::vector<int32_t> s(static_cast<size_t>(out * batch), 0);
    for (int64_t first = 0; first < out * in; first += piece) {
      const int64_t count = std::min(piece, out * in - first);
      linearPiece(sym.data() + first, first, count, lo, in, at.data(), batch, s.data());
    }
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t m = 0; m < out; ++m) {
        ASSERT_EQ(s[m * batch + b], whole[b * out + m]) << "pieces of " << piece;
      }
    }
  }
}

TEST(IntegerLinear, TheInt32BoundIsExact) {
  // 65793 * 128 * 255 = 2^31 - 128; one more input passes 2^31.
  EXPECT_TRUE(integerSumFits(65793, 128, 255));
  EXPECT_FALSE(integerSumFits(65794, 128, 255));
  EXPECT_TRUE(integerSumFits(0, 128, 255));
  const int16_t v[] = {3, -32768, 7};
  EXPECT_EQ(maxAbsLevel(v, 3), 32768);
  EXPECT_EQ(maxAbsLevel(v, 0), 0);
}

TEST(IntegerLinear, LevelsComeBackExactlyFromAQuantizersOutputAndNothingElse) {
  for (float step : {0.1f, 3.7e-3f, 1.7f, 1e-9f}) {
    for (auto [lo, hi] : {std::pair{0, 255}, std::pair{-128, 127}, std::pair{0, 15}}) {
      std::vector<float> x;
      std::vector<int16_t> want;
      for (int l = lo; l <= hi; ++l) {
        x.push_back(static_cast<float>(l) * step);
        want.push_back(static_cast<int16_t>(l));
      }
      std::vector<int16_t> got(x.size());
      ASSERT_TRUE(levelsOnGrid(x.data(), int64_t(x.size()), step, lo, hi, got.data())) << step;
      EXPECT_EQ(got, want) << step;
      auto rejects = [&](float v, size_t at) {
        std::vector<float> y = x;
        y[at] = v;
        return !levelsOnGrid(y.data(), int64_t(y.size()), step, lo, hi, got.data());
      };
      const size_t mid = x.size() / 2;
      EXPECT_TRUE(rejects(std::nextafter(x[mid], 1e30f), mid)) << "off the grid by one ulp";
      EXPECT_TRUE(rejects(x[mid] + 0.5f * step, mid));
      EXPECT_TRUE(rejects(std::numeric_limits<float>::quiet_NaN(), mid));
      EXPECT_TRUE(rejects(std::numeric_limits<float>::infinity(), 0));
      EXPECT_TRUE(rejects(static_cast<float>(hi + 1) * step, x.size() - 1)) << "out of range";
    }
  }
}

TEST(IntegerLinear, NearestLevelValuesRoundHalfToEvenClampAndKeepNaN) {
  const float q = 0.25f;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {0.0f, 0.125f, 0.375f, 0.3f, -0.05f, 3.9f, 100.0f, -inf, nan, inf};
  const std::vector<float> want = {0.0f, 0.0f, 0.5f, 0.25f, -0.0f, 3.75f, 3.75f, 0.0f, nan, 3.75f};
  std::vector<float> y(x.size());
  nearestLevelValues(x.data(), int64_t(x.size()), q, 0.0f, 15.0f, y.data());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(y[i])) << i;
    } else {
      EXPECT_EQ(std::memcmp(&y[i], &want[i], sizeof(float)), 0) << i << ": " << y[i];
    }
  }
}

TEST(IntegerLinear, PooledLevelsAreTheWindowsLargestQuantized) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Two planes of 3 x 5: the odd last row and column are dropped.
  const std::vector<float> x = {0.1f,  0.9f,  0.2f,  0.0f, 9.0f,  //
                                0.3f,  0.4f,  nan,   1.6f, 9.0f,  //
                                9.0f,  9.0f,  9.0f,  9.0f, 9.0f,  //
                                -1.0f, -2.0f, 0.74f, 1.3f, 0.0f,  //
                                -3.0f, -4.0f, 0.2f,  0.2f, 0.0f,  //
                                9.0f,  9.0f,  9.0f,  9.0f, 9.0f};
  std::vector<float> y(4);
  maxPool2NearestLevelValues(x.data(), 2, 3, 5, 0.5f, 0.0f, 3.0f, y.data());
  EXPECT_EQ(y[0], 1.0f);  // max 0.9 -> level 2
  EXPECT_TRUE(std::isnan(y[1]));
  EXPECT_EQ(y[2], 0.0f);  // max -1 -> clamped to level 0
  EXPECT_EQ(y[3], 1.5f);  // max 1.3 -> level 3 (2.6 rounds up)
}

}  // namespace
}  // namespace cdl::kernels
