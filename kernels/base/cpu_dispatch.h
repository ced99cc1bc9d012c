#pragma once

// CDL_TARGET_CLONES asks the compiler for AVX-512 (x86-64-v4), AVX2 and baseline versions of a hot
// function, picked once at load time for the running CPU (GCC on x86-64 Linux, through glibc's
// ifunc). Elsewhere, clang included, it expands to nothing and the baseline build is used. The
// kernels are compiled with -ffp-contract=off and use no reassociated float reductions, so every
// version gives bit-identical results.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(CDL_NO_TARGET_CLONES)
#define CDL_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
// AVX2 and baseline only: AVX2 brings no fused multiply-add (unlike AVX-512 or x86-64-v3), so both
// versions round alike even in code built without -ffp-contract=off (PowerSGD's products).
#define CDL_TARGET_CLONES_NO_FMA __attribute__((target_clones("avx2", "default")))
#else
#define CDL_TARGET_CLONES
#define CDL_TARGET_CLONES_NO_FMA
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

#include <atomic>

namespace cdl {

// The hand-written vector paths, in order: each level includes the ones below it.
enum class CpuLevel : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// What the running CPU (and OS) support: kAvx2 needs AVX2, F16C and POPCNT; kAvx512 adds AVX-512
// F, DQ, BW and VL. Asked once per process.
inline CpuLevel detectedCpuLevel() {
  static const CpuLevel level = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return CpuLevel::kBaseline;
    const bool f16c = (c >> 29) & 1u, popcnt = (c >> 23) & 1u;
    if (!(f16c && popcnt && __builtin_cpu_supports("avx2"))) return CpuLevel::kBaseline;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    return avx512 ? CpuLevel::kAvx512 : CpuLevel::kAvx2;
  }();
  return level;
}

// The highest level the kernels may use (default: all); tests lower it to check every path
// against the baseline. Every path gives the same bits.
inline std::atomic<int>& cpuLevelCap() {
  static std::atomic<int> cap{static_cast<int>(CpuLevel::kAvx512)};
  return cap;
}

// The level the kernels use: the detected one, at most the cap.
inline CpuLevel cpuLevel() {
  const int detected = static_cast<int>(detectedCpuLevel());
  const int cap = cpuLevelCap().load(std::memory_order_relaxed);
  return static_cast<CpuLevel>(detected < cap ? detected : cap);
}

inline bool cpuHasAvx2() { return cpuLevel() >= CpuLevel::kAvx2; }
inline bool cpuHasAvx512() { return cpuLevel() >= CpuLevel::kAvx512; }

}  // namespace cdl
#endif
