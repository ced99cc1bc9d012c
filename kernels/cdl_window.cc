#include "kernels/cdl_window.h"

#include <cmath>
#include <cstdint>

#include "kernels/base/cpu_dispatch.h"

namespace cdl::kernels {
namespace {

// e^r for -87 <= r <= 87 within 2 ulp, as a vectorizable expression: 2^n e^f with n = round(r / ln
// 2) and |f| <= ln 2 / 2 (the split of ln 2 and the polynomial are Cephes' expf's).
[[gnu::always_inline]] inline float expOf(float r) {
  const float n = std::nearbyint(r * 1.44269504088896341f);
  const float f = (r - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const float y = p * f * f + f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) * (1 << 23);
  return y * __builtin_bit_cast(float, bits);
}

// W levels a window, or s.w with W = 0 (the widths without a version of their own).
template <int W>
[[gnu::always_inline]] inline void windows(const WindowParams& s, const float* x, int n,
                                           WindowBatch* b) {
  const int w = W > 0 ? W : s.w, h = (w - 1) / 2;
  const float lo = static_cast<float>(s.lo), hi = static_cast<float>(s.hi);
  const float lastFirst = static_cast<float>(s.hi - w + 1), q = s.q, kappa = s.kappa;
  for (int i = 0; i < n; ++i) {
    const float u = x[i] / q;
    const bool ok = u >= -kMaxBatchLevel && u <= kMaxBatchLevel;  // false for NaN
    const float v = ok ? u : 0.0f;
    const float centre = std::nearbyint(v);
    const float first = std::min(std::max(centre - static_cast<float>(h), lo), lastFirst);
    // The window's largest probability is at the level nearest u, the centre moved into the
    // range: every exponent taken relative to it is <= 0 (its own is 0).
    const float nearest = std::min(std::max(centre, lo), hi);
    const float top = (v - nearest) * (v - nearest);
    float p[W > 0 ? W : kMaxWindowLevels];
    float z = 0.0f;
    for (int k = 0; k < w; ++k) {
      const float d = v - (first + static_cast<float>(k));
      p[k] = expOf(std::max(-kappa * (d * d - top), -87.0f));
      z += p[k];
    }
    const float iz = 1.0f / z;
    float mean = 0.0f;
    for (int k = 0; k < w; ++k) {
      p[k] *= iz;
      mean += p[k] * (first + static_cast<float>(k));
      b->p[k][i] = p[k];
    }
    b->u[i] = u;
    b->mean[i] = mean;
    b->first[i] = first;
    b->full[i] = ok ? 0 : 1;
  }
}

template <int W, bool kRate, bool kKappa>
[[gnu::always_inline]] inline void gradients(const WindowParams& s, const WindowBatch& b, int n,
                                             const float* gy, const float (*gm)[kWindowLanes],
                                             float* dx, float* qTerm, float* dMeanDk,
                                             float* rateK) {
  const int w = W > 0 ? W : s.w;
  const float twoKappa = 2.0f * s.kappa, q = s.q;
  for (int i = 0; i < n; ++i) {
    const float u = b.u[i], mean = b.mean[i], first = b.first[i];
    float var = 0.0f, dBar = 0.0f, rateU = 0.0f;
    for (int k = 0; k < w; ++k) {
      const float a = first + static_cast<float>(k), d = u - a, c = a - mean, p = b.p[k][i];
      var += p * c * c;
      if (kKappa) dBar += p * d * d;
      if (kRate) rateU += gm[k][i] * p * c;
    }
    const float dMeanDu = twoKappa * var;
    dx[i] = gy[i] * dMeanDu + (kRate ? twoKappa * rateU / q : 0.0f);
    qTerm[i] = mean - u * dMeanDu;
    if (!kKappa) continue;
    float dk = 0.0f, rk = 0.0f;
    for (int k = 0; k < w; ++k) {
      const float a = first + static_cast<float>(k), d = u - a;
      const float dp = b.p[k][i] * (dBar - d * d);
      dk += a * dp;
      if (kRate) rk += gm[k][i] * dp;
    }
    dMeanDk[i] = dk;
    rateK[i] = rk;
  }
}

template <int W>
[[gnu::always_inline]] inline void gradientsOf(const WindowParams& s, const WindowBatch& b, int n,
                                               const float* gy, const float (*gm)[kWindowLanes],
                                               float* dx, float* qTerm, float* dMeanDk,
                                               float* rateK) {
  const bool kappa = dMeanDk != nullptr;
  if (gm != nullptr && kappa) {
    gradients<W, true, true>(s, b, n, gy, gm, dx, qTerm, dMeanDk, rateK);
  } else if (gm != nullptr) {
    gradients<W, true, false>(s, b, n, gy, gm, dx, qTerm, dMeanDk, rateK);
  } else if (kappa) {
    gradients<W, false, true>(s, b, n, gy, gm, dx, qTerm, dMeanDk, rateK);
  } else {
    gradients<W, false, false>(s, b, n, gy, gm, dx, qTerm, dMeanDk, rateK);
  }
}

}  // namespace

// The body for window widths 1 to 9, W a constant in each (the default width is 5), and for the
// wider ones with W = 0.
// clang-format off
#define CDL_FOR_WIDTH(w, call) \
  switch (w) {                 \
    case 1: call(1); break;    \
    case 2: call(2); break;    \
    case 3: call(3); break;    \
    case 4: call(4); break;    \
    case 5: call(5); break;    \
    case 6: call(6); break;    \
    case 7: call(7); break;    \
    case 8: call(8); break;    \
    case 9: call(9); break;    \
    default: call(0); break;   \
  }
// clang-format on

CDL_TARGET_CLONES void batchWindows(const WindowParams& s, const float* x, int n, WindowBatch* b){
#define CDL_WINDOWS(W) windows<W>(s, x, n, b)
    CDL_FOR_WIDTH(s.w, CDL_WINDOWS)
#undef CDL_WINDOWS
}

CDL_TARGET_CLONES void windowGradients(const WindowParams& s, const WindowBatch& b, int n,
                                       const float* gy, const float (*gm)[kWindowLanes], float* dx,
                                       float* qTerm, float* dMeanDk, float* rateK) {
#define CDL_GRADIENTS(W) gradientsOf<W>(s, b, n, gy, gm, dx, qTerm, dMeanDk, rateK)
  CDL_FOR_WIDTH(s.w, CDL_GRADIENTS)
#undef CDL_GRADIENTS
}

#undef CDL_FOR_WIDTH

}  // namespace cdl::kernels
