#include "kernels/histogram.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::kernels {
namespace {

std::vector<uint8_t> skewedSymbols(int64_t n, int alphabet, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::geometric_distribution<int> geo(0.4);
  std::vector<uint8_t> s(static_cast<size_t>(n));
  for (auto& v : s) v = static_cast<uint8_t>(std::min(geo(rng), alphabet - 1));
  return s;
}

TEST(HistogramTest, MatchesANaiveCountForAnySizeAlignmentAndDistribution) {
  std::mt19937_64 rng(1);
  for (int64_t n : {0, 1, 7, 8, 9, 63, 1000, 4097, 100003}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<uint8_t> buf(static_cast<size_t>(n) + 3);
      if (kind == 0) {
        for (auto& v : buf) v = static_cast<uint8_t>(rng());
      } else if (kind == 1) {
        buf = skewedSymbols(n + 3, 15, n);
      } else {
        std::fill(buf.begin(), buf.end(), 255);
      }
      for (int offset = 0; offset < 3; ++offset) {
        uint64_t naive[256] = {};
        for (int64_t i = 0; i < n; ++i) ++naive[buf[offset + i]];
        uint64_t counts[256];
        std::fill(counts, counts + 256, 999);
        histogram(buf.data() + offset, n, counts);
        for (int s = 0; s < 256; ++s) {
          ASSERT_EQ(counts[s], naive[s]) << "n " << n << " kind " << kind << " symbol " << s;
        }
      }
    }
  }
}

TEST(HistogramTest, EntropyBitsMatchesTheDirectFormula) {
  for (int alphabet : {1, 2, 15, 255}) {
    const auto sym = skewedSymbols(10007, alphabet, alphabet);
    uint64_t counts[256];
    histogram(sym.data(), static_cast<int64_t>(sym.size()), counts);
    double expected = 0.0;
    const double n = static_cast<double>(sym.size());
    for (int s = 0; s < 256; ++s) {
      if (counts[s] == 0) continue;
      const double p = counts[s] / n;
      expected -= n * p * std::log2(p);
    }
    EXPECT_NEAR(entropyBits(counts), expected, 1e-9 * n + 1e-9) << alphabet;
  }
}

TEST(HistogramTest, EntropyBitsOfSimpleDistributions) {
  uint64_t counts[256] = {};
  EXPECT_EQ(entropyBits(counts), 0.0);
  counts[3] = 1000;
  EXPECT_EQ(entropyBits(counts), 0.0);
  counts[0] = counts[1] = counts[2] = 1000;
  EXPECT_DOUBLE_EQ(entropyBits(counts), 4000 * 2.0);
  std::fill(counts, counts + 256, uint64_t{1} << 40);
  EXPECT_DOUBLE_EQ(entropyBits(counts), 256.0 * double(uint64_t{1} << 40) * 8.0);
}

TEST(HistogramTest, InvalidArgumentsThrow) {
  uint64_t counts[256];
  std::vector<uint8_t> sym(4);
  EXPECT_THROW(histogram(sym.data(), -1, counts), Error);
  EXPECT_THROW(histogram(nullptr, 4, counts), Error);
  EXPECT_THROW(histogram(sym.data(), 4, nullptr), Error);
  EXPECT_NO_THROW(histogram(nullptr, 0, counts));
  EXPECT_EQ(counts[0], 0u);
  EXPECT_THROW(entropyBits(nullptr), Error);
}

}  // namespace
}  // namespace cdl::kernels
