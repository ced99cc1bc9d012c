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
// y = fp32(S * q * 2^-s_b) + bias.

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

// x [batch, in] (float) through the layer: [batch, out]. bias is empty or [out]. Throws
// cdl::Error when the sizes disagree or the layer has more than 2^21 inputs.
at::Tensor exactLinear(const at::Tensor& x, const IndexedWeight& w, const at::Tensor& bias);

}  // namespace cdl::core
