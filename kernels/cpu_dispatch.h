#pragma once

// CDL_TARGET_CLONES asks the compiler for AVX-512 (x86-64-v4), AVX2 and baseline versions of a hot
// function, picked once at load time for the running CPU (GCC on x86-64 Linux, through glibc's
// ifunc). Elsewhere, clang included, it expands to nothing and the baseline build is used. The
// kernels are compiled with -ffp-contract=off and use no reassociated float reductions, so every
// version gives bit-identical results.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(CDL_NO_TARGET_CLONES)
#define CDL_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CDL_TARGET_CLONES
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

namespace cdl {

// True when the running CPU (and OS) support AVX2 together with F16C and POPCNT, the feature set
// of the hand-written AVX2 paths. Asked once per process.
inline bool cpuHasAvx2() {
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool f16c = (c >> 29) & 1u, popcnt = (c >> 23) & 1u;
    return f16c && popcnt && __builtin_cpu_supports("avx2");
  }();
  return yes;
}

}  // namespace cdl
#endif
