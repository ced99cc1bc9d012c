#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cdl::core {

// What a CDL model's quantized tensors cost, measured at an epoch end (Note [CDL quantizer]).
struct CdlWeightReport {
  std::string name;  // the weight's parameter name
  int64_t numel = 0;
  int bits = 0;              // of its quantizer
  double step = 0.0;         // the quantizer's q
  double entropyBits = 0.0;  // bits per weight: the entropy of its nearest-level indices
  uint64_t codedBytes = 0;   // those indices rANS-coded (kernels/rans.h), header included
  double kappa = 0.0;        // of its quantizer (clamped as used)
  double offNearest = 0.0;   // the share of its samples at this step off the nearest level
};

struct CdlActivationReport {
  std::string name;  // the quantizer's module name, e.g. "aq1"
  int bits = 0;
  double step = 0.0;
  double entropyBits = 0.0;  // bits per element over the test set's nearest-level indices
  double kappa = 0.0;
};

struct CdlReport {
  std::vector<CdlWeightReport> weights;
  std::vector<CdlActivationReport> activations;
  double bitsPerWeight = 0.0;       // the parameter-weighted mean of the weights' entropies
  double codedBitsPerWeight = 0.0;  // 8 * codedWeightBytes / quantized weights
  uint64_t codedWeightBytes = 0;    // every quantized weight, rANS-coded
  uint64_t otherBytes = 0;          // every other parameter and float buffer, as fp32
  double offNearest = 0.0;          // the parameter-weighted mean of the weights' offNearest
  // Note [CDL diagnostics]: the test accuracy with Q_d and with one sample in every quantizer
  // (the report's evaluation rounds to the nearest level); -1: not measured.
  double softAccuracy = -1.0, sampledAccuracy = -1.0;
  // The coded model: what inference needs, the quantized weights entropy-coded.
  uint64_t modelCodedBytes() const { return codedWeightBytes + otherBytes; }
};

}  // namespace cdl::core
