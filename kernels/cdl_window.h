#pragma once

#include <cstdint>

namespace cdl::kernels {

// The CDL quantizer's window probabilities (Note [CDL quantizer] in core/cdl/cdl_quantizer.h),
// P_k proportional to e^(-kappa (u - a_k)^2) over the window's levels a_k, u = x / q, for a batch
// of elements at a time as vector code (one exp per level, a polynomial, taken relative to the
// level nearest u so that no exponent is positive), windows of up to 9 levels with a version of
// their own each; built with -ffp-contract=off and without reassociation, so every CPU's version
// gives the same bits.

inline constexpr int kMaxWindowLevels = 256;
inline constexpr int kWindowLanes = 64;  // elements per batch
// Beyond this |u| an element is left to the caller (the squares would lose all precision).
inline constexpr float kMaxBatchLevel = 1048576.0f;

struct WindowParams {
  float q = 1.0f;          // the step, > 0
  float kappa = 1.0f;      // in [kKappaMin, kKappaMax]
  int64_t lo = 0, hi = 0;  // the level range
  int w = 1;               // levels in the window, 1..kMaxWindowLevels, at most hi - lo + 1
};

// A batch in structure-of-arrays form: element i's window starts at level first[i] (round(u)
// minus (w - 1) / 2, moved inside the range), slot k has probability p[k][i]; mean[i] = sum_k
// p[k][i] (first[i] + k), u[i] = x[i] / q. full[i] != 0 marks an element the batch could not take
// (x not finite, or |u| > kMaxBatchLevel): its p, mean and first are the caller's to set.
struct WindowBatch {
  float u[kWindowLanes];
  float mean[kWindowLanes];
  float first[kWindowLanes];
  uint8_t full[kWindowLanes];
  float p[kMaxWindowLevels][kWindowLanes];  // only the first w rows are used
};

// Fills b for x[0, n), n <= kWindowLanes.
void batchWindows(const WindowParams& s, const float* x, int n, WindowBatch* b);

// The per-element gradients of a filled batch (every lane's window set): with d_k = u - a_k,
// var = sum_k p_k (a_k - mean)^2, dx = gy 2 kappa var + 2 kappa sum_k gm_k p_k (a_k - mean) / q
// (gm: the masses' gradient at each slot, gm[k][i], or null), qTerm = mean - u 2 kappa var (q's
// gradient is sum gy qTerm); with kappaTerms (else null): D = sum_k p_k d_k^2, dMeanDk[i] =
// sum_k a_k p_k (D - d_k^2), rateK[i] = sum_k gm_k p_k (D - d_k^2) (0 without gm).
void windowGradients(const WindowParams& s, const WindowBatch& b, int n, const float* gy,
                     const float (*gm)[kWindowLanes], float* dx, float* qTerm, float* dMeanDk,
                     float* rateK);

}  // namespace cdl::kernels
