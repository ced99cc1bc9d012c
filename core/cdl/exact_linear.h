#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace cdl::core {

// Note [Exact linear]
// A linear layer with quantized weights w = level * q evaluates exactly, so that its result does
// not depend on the order of its inputs (a model in canonical order, Note [Canonical order],
// computes the same logits bit for bit) nor on how the weights are read (all at once or straight
// from the coded stream). Each input row x_b is put on a fixed-point grid: X = round(x * 2^s_b),
// with s_b the largest shift that keeps every |X| below 2^P, P = 45 - ceil(log2(inputs)) (>= 24,
// finer than fp32's 24 bits for every input within 2^(P-24) of the row's largest). Then
// S = sum_k level_k * X_k is a sum of integers below 2^53, exact in double in any order, and
// y = fp32(S * q * 2^-s_b) + bias. A layer that reads an activation quantizer's levels sums them
// in integers instead (Note [Integer linear]): y = fp32(S * q * q_a) + bias, with S the int32
// sum of weight levels times input levels, exact as well.

// The grid an input lies on when it is an activation quantizer's nearest-level output:
// fl(level * step) with lo <= level <= hi; step 0 for an input on no known grid.
struct LevelGrid {
  float step = 0.0f;
  int32_t lo = 0;
  int32_t hi = 0;
};

// The quantization indices of a linear layer's weight [out, in]: symbols s = level - lo, either
// held (symbols) or decoded from a coded stream as the layer runs (coded, Note [Interleaved rANS
// stream]).
struct IndexedWeight {
  int64_t out = 0;
  int64_t in = 0;
  int lo = 0;
  int bits = 8;
  float step = 0.0f;
  std::vector<uint8_t> symbols;  // row-major out x in, or empty when coded
  std::vector<uint8_t> coded;    // a rANS stream of out x in symbols, used when symbols is empty
};

// x [batch, in] (float) through the layer: [batch, out]. bias is empty or [out]. With a grid, an
// input whose every element lies on it, and sums that fit int32, the integer sums; otherwise the
// fixed-point ones. Throws cdl::Error when the sizes disagree or the layer has more than 2^21
// inputs.
at::Tensor exactLinear(const at::Tensor& x, const IndexedWeight& w, const at::Tensor& bias,
                       const LevelGrid& grid = {});

}  // namespace cdl::core
