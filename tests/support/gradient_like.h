#pragma once

// Gradient-like test data for the codec tests, CPU and GPU alike.
#include <cstdint>
#include <random>
#include <vector>

namespace cdl::test {

// n values, half small Gaussians (std 0.01), half exponential outliers of either sign: the mix
// of a gradient's many small entries and few large ones, from a seed.
inline std::vector<float> gradientLike(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::exponential_distribution<float> expo(20.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = (rng() & 1) ? normal(rng) * 0.01f : (rng() & 2 ? 1.0f : -1.0f) * expo(rng);
  return x;
}

}  // namespace cdl::test
