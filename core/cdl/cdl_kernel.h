#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/cdl/cdl_quantizer.h"

namespace cdl::core {

// The fused CDL quantizer (Note [CDL quantizer]): one pass over x computes, per element, the
// window's probabilities and either a sampled level (sample: CDL, draw counterBase + j of stream
// `key` for element j) or Q_d (R-CDL), and adds the probabilities to the level masses; the backward
// pass recomputes the window and gives the gradients of Q_d with respect to x and kappa, of the
// masses with respect to x and kappa (not step: the rate shapes the distribution, it does not grow
// q), and with respect to step Q_d's (R-CDL) or, with a sample, the sample's (Note [Step from the
// sample] in cdl_quantizer.h: i - u inside the range, i outside, as LSQ's rounded level). It equals
// softQuantize / sampleLevels / levelMass up to float rounding (tests check it), without their
// [elements x window] temporaries. x must be a float32 CPU tensor; step and kappa 1-element ones.
struct FusedQuantization {
  at::Tensor y;     // the quantized x
  at::Tensor mass;  // float [range.count()]: the summed P(i | x) of every level
};
FusedQuantization fusedQuantize(const at::Tensor& x, const at::Tensor& step,
                                const at::Tensor& kappa, LevelRange range, int window, bool sample,
                                uint64_t key, int64_t counterBase = 0);

// LSQ (Esser et al., 2020; cdl.mode lsq, a baseline beside CDL): y = clamp(round(x / q), lo, hi) q
// with the straight-through gradient: dy/dx = 1 inside the range and 0 outside, dy/dq = round(u)
// - u inside (u = x / q) and lo or hi outside. mass counts each element's level (no gradient), so
// the rate is the entropy of the levels used. x must be a float32 CPU tensor, step 1-element.
FusedQuantization lsqQuantize(const at::Tensor& x, const at::Tensor& step, LevelRange range);

}  // namespace cdl::core
