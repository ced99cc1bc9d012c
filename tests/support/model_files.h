#pragma once

// Small coded model files of every tensor kind and coder, for the model-file tests and the fuzz
// seeds.
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/model_file/model_file.h"

namespace cdl::test {

// A quantized tensor of `rows` x `cols` symbols drawn around the middle level, rows repeating
// when distinct < rows.
inline core::ModelTensor quantizedTensor(const std::string& name, int64_t rows, int64_t cols,
                                         int bits, core::TensorCoder coder, int64_t distinct,
                                         uint32_t seed) {
  core::ModelTensor t;
  t.name = name;
  t.shape = {rows, cols};
  t.kind = core::TensorKind::kQuantized;
  t.coder = coder;
  t.bits = bits;
  t.isSigned = true;
  t.step = 0.0625f;
  std::mt19937 rng(seed);
  std::binomial_distribution<int> level((1 << bits) - 1, 0.5);
  std::vector<uint8_t> pool(static_cast<size_t>(distinct * cols));
  for (auto& s : pool) s = static_cast<uint8_t>(level(rng));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t from = distinct > 0 ? static_cast<int64_t>(rng() % distinct) : 0;
    t.symbols.insert(t.symbols.end(), pool.begin() + from * cols, pool.begin() + (from + 1) * cols);
  }
  return t;
}

inline core::ModelTensor floatTensor(const std::string& name, std::vector<int64_t> shape,
                                     core::TensorCoder coder, uint32_t seed) {
  core::ModelTensor t;
  t.name = name;
  t.shape = std::move(shape);
  t.kind = core::TensorKind::kFloat;
  t.coder = coder;
  std::mt19937 rng(seed);
  std::normal_distribution<float> v(0.0f, 1.0f);
  t.values.resize(static_cast<size_t>(t.numel()));
  for (auto& x : t.values) x = v(rng);
  return t;
}

// A file with one tensor of every kind and coder, including an empty one and a scalar.
inline core::ModelFile sampleModelFile(int64_t rows = 24, int64_t cols = 10) {
  core::ModelFile f;
  f.meta = R"({"model":"test"})";
  f.tensors.push_back(
      quantizedTensor("fc1.weight", rows, cols, 4, core::TensorCoder::kRans, rows, 1));
  f.tensors.push_back(quantizedTensor("fc2.weight", rows, cols, 3, core::TensorCoder::kRowMultiset,
                                      std::max<int64_t>(1, rows / 3), 2));
  f.tensors.push_back(floatTensor("fc1.bias", {rows}, core::TensorCoder::kFp32, 3));
  f.tensors.push_back(floatTensor("bn.weight", {rows}, core::TensorCoder::kFp16, 4));
  f.tensors.push_back(floatTensor("aq1.log_step", {}, core::TensorCoder::kFp32, 5));
  f.tensors.push_back(floatTensor("empty", {0, 3}, core::TensorCoder::kFp32, 6));
  core::ModelTensor n;
  n.name = "bn.num_batches_tracked";
  n.kind = core::TensorKind::kInt64;
  n.coder = core::TensorCoder::kInt64;
  n.ints = {123456789012345};
  f.tensors.push_back(n);
  return f;
}

}  // namespace cdl::test
