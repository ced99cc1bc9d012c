#pragma once

// What the Python module computes without LibTorch or Python (python/csrc/plain.cc), so that the
// one translation unit that includes torch's pybind headers (module.cc) stays small.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "comm/codec/spec.h"

namespace cdl::py {

// One rank's floats in a reference run.
using Floats = std::vector<float>;

// cdl's compressedAllreduce over `inputs.size()` thread-ranks of an in-process group
// (makeLocalGroup): rank r reduces inputs[r], with residuals[r] as its error-feedback residual
// when residuals is not empty. Returns every rank's result; residuals are updated in place.
std::vector<Floats> referenceAllreduce(const std::string& spec, std::vector<Floats> inputs,
                                       std::vector<Floats>* residuals, uint64_t roundingKey,
                                       bool average, int64_t segmentBytes);

// A matrix shape (rows, cols) of one tensor of a bucket.
using Shape2 = std::pair<int64_t, int64_t>;

// cdl's PowerSGD scheme (makeScheme of `spec`, "powersgd:rank=R") over steps.size() steps of
// steps[0].size() thread-ranks of an in-process group: at step s rank r reduces the bucket
// steps[s][r], which holds the tensors of `shapes` back to back (tensor i's factors drawn from
// powerSgdSeed(seed, i)). Returns every step's result per rank.
std::vector<std::vector<Floats>> referencePowerSgd(const std::string& spec,
                                                   const std::vector<Shape2>& shapes,
                                                   std::vector<std::vector<Floats>> steps,
                                                   uint64_t seed);

// The parsed codec spec; throws cdl::Error naming the spec and the key.
comm::CodecSpec codecSpec(const std::string& spec);

// One tensor of a .cdlm file as floats or int64 (int64 tensors), with its shape.
struct LoadedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool isInt64 = false;
  Floats values;
  std::vector<int64_t> ints;
};

// A tensor to write into a .cdlm file: float (values), int64 (ints), or quantized (levels, each
// in the signed range of `bits`, with step > 0; coded with rANS).
struct SavedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool isInt64 = false;
  Floats values;
  std::vector<int64_t> ints;
  int bits = 0;  // > 0: quantized
  float step = 0.0f;
  std::vector<int64_t> levels;
};

// The bytes of a .cdlm file with the JSON description `meta` and these tensors; throws cdl::Error
// naming the tensor that does not fit the format (a level out of range, a bad shape, ...).
std::vector<uint8_t> encodeModel(const std::string& meta, const std::vector<SavedTensor>& tensors);

// Every tensor of the .cdlm file at path, quantized weights as level * step; throws cdl::Error
// naming the file and, where one is at fault, the tensor.
std::vector<LoadedTensor> loadModelFile(const std::string& path);
// The report of `cdl-model inspect` as JSON text, with the file's description under "meta".
std::string inspectModelFile(const std::string& path);

}  // namespace cdl::py
