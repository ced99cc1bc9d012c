#include "kernels/int_linear.h"

#include <cmath>
#include <cstdlib>

#include "kernels/base/cpu_dispatch.h"

namespace cdl::kernels {
namespace {

// One input row against four weight rows: the row is read once for four sums.
CDL_TARGET_CLONES
void dot4(const int16_t* a, const int16_t* w, int64_t in, int32_t* s) {
  const int16_t *w0 = w, *w1 = w + in, *w2 = w + 2 * in, *w3 = w + 3 * in;
  int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t k = 0; k < in; ++k) {
    const int32_t v = a[k];
    s0 += v * w0[k];
    s1 += v * w1[k];
    s2 += v * w2[k];
    s3 += v * w3[k];
  }
  s[0] = s0;
  s[1] = s1;
  s[2] = s2;
  s[3] = s3;
}

CDL_TARGET_CLONES
int32_t dot(const int16_t* a, const int16_t* w, int64_t in) {
  int32_t s = 0;
  for (int64_t k = 0; k < in; ++k) s += int32_t{a[k]} * w[k];
  return s;
}

// The nearest level of x at step in [lo, hi], as ATen's round then clamp compute it (NaN stays).
inline float nearestLevel(float x, float step, float lo, float hi) {
  const float l = std::nearbyint(x / step);
  return l < lo ? lo : (l > hi ? hi : l);
}

// ATen's max pooling step: a later value replaces the maximum when larger or NaN; a NaN stays.
inline float larger(float m, float v) { return (v > m || v != v) && m == m ? v : m; }

}  // namespace

int32_t maxAbsLevel(const int16_t* v, int64_t n) {
  int32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(int32_t{v[i]}));
  return m;
}

bool integerSumFits(int64_t in, int32_t maxW, int32_t maxA) {
  return static_cast<double>(in) * maxW * maxA < 2147483648.0;
}

CDL_TARGET_CLONES
bool levelsOnGrid(const float* x, int64_t n, float step, int32_t lo, int32_t hi, int16_t* levels) {
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) {
    const float c = nearestLevel(x[i], step, flo, fhi);
    ok &= c * step == x[i];  // false for NaN, and for a level out of range (clamped)
    levels[i] = static_cast<int16_t>(c == c ? c : 0.0f);
  }
  return ok;
}

CDL_TARGET_CLONES
void nearestLevelValues(const float* x, int64_t n, float step, float lo, float hi, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = nearestLevel(x[i], step, lo, hi) * step;
}

CDL_TARGET_CLONES
void maxPool2NearestLevelValues(const float* x, int64_t planes, int64_t h, int64_t w, float step,
                                float lo, float hi, float* y) {
  const int64_t oh = h / 2, ow = w / 2;
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < oh; ++i) {
      const float* r0 = x + (p * h + 2 * i) * w;
      const float* r1 = r0 + w;
      float* out = y + (p * oh + i) * ow;
      for (int64_t j = 0; j < ow; ++j) {
        float m = r0[2 * j];
        m = larger(m, r0[2 * j + 1]);
        m = larger(m, r1[2 * j]);
        m = larger(m, r1[2 * j + 1]);
        out[j] = nearestLevel(m, step, lo, hi) * step;
      }
    }
  }
}

void integerLinear(const int16_t* a, int64_t batch, const int16_t* w, int64_t out, int64_t in,
                   int32_t* s) {
  for (int64_t b = 0; b < batch; ++b) {
    const int16_t* ab = a + b * in;
    int32_t* sb = s + b * out;
    int64_t m = 0;
    for (; m + 4 <= out; m += 4) dot4(ab, w + m * in, in, sb + m);
    for (; m < out; ++m) sb[m] = dot(ab, w + m * in, in);
  }
}

}  // namespace cdl::kernels
