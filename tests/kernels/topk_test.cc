#include "kernels/topk.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::kernels {
namespace {

// Reference: stable sort by decreasing magnitude, take k, return sorted indices.
std::vector<uint32_t> reference(const std::vector<float>& x, int64_t k) {
  std::vector<uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  order.resize(static_cast<size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

TEST(Topk, MatchesSortingReferenceIncludingTies) {
  std::mt19937 rng(1);
  for (int64_t n : {1, 7, 1000, 70001}) {
    std::vector<float> x(static_cast<size_t>(n));
    // Few distinct magnitudes: many ties, decided by index.
    for (auto& v : x) v = float(int(rng() % 9) - 4) * 0.5f;
    for (int64_t k : {int64_t{0}, int64_t{1}, n / 3, n - 1, n}) {
      if (k < 0) continue;
      std::vector<uint32_t> got(static_cast<size_t>(k));
      topkIndices(x.data(), n, k, got.data());
      ASSERT_EQ(got, reference(x, k)) << "n=" << n << " k=" << k;
    }
  }
}

TEST(Topk, WorksOnContinuousValues) {
  std::mt19937 rng(2);
  std::vector<float> x(100000);
  for (auto& v : x) v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
  std::vector<uint32_t> got(1000);
  topkIndices(x.data(), 100000, 1000, got.data());
  EXPECT_EQ(got, reference(x, 1000));
}

TEST(Topk, RejectsKOutOfRange) {
  float x[3] = {1, 2, 3};
  uint32_t idx[4];
  EXPECT_THROW(topkIndices(x, 3, 4, idx), Error);
  EXPECT_THROW(topkIndices(x, 3, -1, idx), Error);
}

}  // namespace
}  // namespace cdl::kernels
