#pragma once

#include <cstdint>

namespace cdl::kernels {

// A counter-based generator: every draw is a pure function of (key, counter), so a stochastic
// kernel gives the same result on any thread count or device. The mixer is SplitMix64's
// finalizer, which passes BigCrush when fed a counter.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The stream key for (seed, step, tensor id): distinct inputs give unrelated streams.
inline uint64_t roundingKey(uint64_t seed, uint64_t step, uint64_t tensorId) {
  return mix64(mix64(mix64(seed ^ 0x9e3779b97f4a7c15ULL) ^ step) + tensorId);
}

// A uniform float in [0, 1) with 24 random bits, for draw `counter` of stream `key`.
inline float uniform01(uint64_t key, uint64_t counter) {
  return static_cast<float>(mix64(key + counter * 0x9e3779b97f4a7c15ULL) >> 40) * 0x1.0p-24f;
}

}  // namespace cdl::kernels
