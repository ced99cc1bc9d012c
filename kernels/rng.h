#pragma once

#include <cstdint>

// Marks the generator host and device code under nvcc; plain C++ compilers see ordinary inline
// functions.
#ifndef CDL_HOST_DEVICE
#if defined(__CUDACC__)
#define CDL_HOST_DEVICE __host__ __device__
#else
#define CDL_HOST_DEVICE
#endif
#endif

namespace cdl::kernels {

// A counter-based generator: every draw is a pure function of (key, counter), so a stochastic
// kernel gives the same result on any thread count or device. The mixer is SplitMix64's
// finalizer, which passes BigCrush when fed a counter.
CDL_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The stream key for (seed, step, tensor id): distinct inputs give unrelated streams.
CDL_HOST_DEVICE inline uint64_t roundingKey(uint64_t seed, uint64_t step, uint64_t tensorId) {
  return mix64(mix64(mix64(seed ^ 0x9e3779b97f4a7c15ULL) ^ step) + tensorId);
}

// A uniform float in [0, 1) with 24 random bits, for draw `counter` of stream `key`. The 24 bits
// go through int32_t, which converts exactly and lets compilers vectorize loops of draws.
CDL_HOST_DEVICE inline float uniform01(uint64_t key, uint64_t counter) {
  const uint64_t bits = mix64(key + counter * 0x9e3779b97f4a7c15ULL) >> 40;
  return static_cast<float>(static_cast<int32_t>(bits)) * 0x1.0p-24f;
}

}  // namespace cdl::kernels
