#pragma once

#include <cstdint>

namespace cdl::kernels {

// Note [Integer linear]
// A linear layer whose weights are levels w = l_w * q_w (int, |l_w| <= 127) and whose input is
// the output of an activation quantizer, x = l_a * q_a (0 <= l_a <= 255, or any int16 level),
// is S * (q_w * q_a) with S = sum_k l_w[m][k] * l_a[b][k]: an integer sum, exact in int32 while
// in * max|l_w| * max|l_a| < 2^31, and so the same in any order, on any CPU and at any blocking.
// The layer's input levels are recovered from its floats, l = nearbyint(x / q_a), which is exact
// for a quantizer's output (x = fl(l * q_a) with |l| < 2^15 divides back to within 2^-9 of l),
// and checked: an input that is not exactly fl(l * q_a) with l in range is not on the grid and
// goes back to the caller (Note [Exact linear] then applies).

// Largest |level| over n int16 values (0 when n == 0).
int32_t maxAbsLevel(const int16_t* v, int64_t n);

// Whether in * maxW * maxA stays below 2^31 (the sums of Note [Integer linear] are then exact).
bool integerSumFits(int64_t in, int32_t maxW, int32_t maxA);

// levels[i] = nearbyint(x[i] / step) for every i when each x[i] is exactly fl(level * step) with
// lo <= level <= hi (lo >= -32768, hi <= 32767, step > 0); false (levels then unspecified) at the
// first x[i] that is not, NaN and infinities included.
bool levelsOnGrid(const float* x, int64_t n, float step, int32_t lo, int32_t hi, int16_t* levels);

// y[i] = clamp(nearbyint(x[i] / step), lo, hi) * step, in float, as ATen's round, clamp and mul
// compute it (NaN stays NaN). step > 0.
void nearestLevelValues(const float* x, int64_t n, float step, float lo, float hi, float* y);

// 2x2 max pooling (stride 2, no padding, an odd last row or column dropped) of `planes` planes
// of h x w, then nearestLevelValues of each maximum: y has planes x (h / 2) x (w / 2) values. The
// maximum is chosen as ATen's max pooling chooses it (the first of the window in row order unless
// a later one is larger, a NaN wins), so y equals pooling then quantizing bit for bit; the
// quantizer is monotone, so it also equals quantizing then pooling.
void maxPool2NearestLevelValues(const float* x, int64_t planes, int64_t h, int64_t w, float step,
                                float lo, float hi, float* y);

// s[b * out + m] = sum_k a[b * in + k] * w[m * in + k] in int32 (integerSumFits must hold).
void integerLinear(const int16_t* a, int64_t batch, const int16_t* w, int64_t out, int64_t in,
                   int32_t* s);

// The same sum, over a piece of the weight's symbols as a coded stream yields them: weights
// flat index first..first+count, level = sym + lo, added into s[m * batch + b] with the input
// transposed, at[k * batch + b]. Sum is int32_t over int16_t levels (the integer grid) or double
// over the fixed-point inputs of Note [Exact linear]; either way the sums are exact, so the order
// of the pieces does not matter.
template <typename Input, typename Sum>
void linearPiece(const uint8_t* sym, int64_t first, int64_t count, int32_t lo, int64_t in,
                 const Input* at, int64_t batch, Sum* s) {
  for (int64_t i = 0; i < count; ++i) {
    const Sum level = static_cast<Sum>(int32_t{sym[i]} + lo);
    if (level == 0) continue;
    const int64_t pos = first + i;
    const Input* xk = at + (pos % in) * batch;
    Sum* sm = s + (pos / in) * batch;
    for (int64_t b = 0; b < batch; ++b) sm[b] += level * static_cast<Sum>(xk[b]);
  }
}

}  // namespace cdl::kernels
