#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/model_file/model_file.h"

namespace cdl::core {

// What `cdl-model inspect` shows of one tensor of a coded model file.
struct TensorReport {
  std::string name;
  std::vector<int64_t> shape;
  std::string coder;
  int bits = 0;  // quantized: bits of its levels
  int64_t elements = 0;
  uint64_t codedBytes = 0;
  double bitsPerElement = 0.0;
  // Quantized: the order-0 entropy of its symbols (the bound a coder of independent symbols
  // approaches), in bytes.
  double entropyBytes = 0.0;
  // Row-multiset tensors: log2(rows! / prod m_j!) (the most that dropping the row order can
  // save), and what it saved against the same rows coded in order with the same model.
  double permutationBits = 0.0;
  double savedBits = 0.0;
};

struct ModelReport {
  std::vector<TensorReport> tensors;
  uint64_t fileBytes = 0;
  uint64_t fp32Bytes = 0;  // every tensor at 4 bytes an element
  double ratioToFp32 = 0.0;
  int64_t quantizedWeights = 0;
  uint64_t quantizedBytes = 0;
  double bitsPerWeight = 0.0;  // quantized tensors' coded bits per element
};

// Decodes what it needs (symbols of tensors read without them).
ModelReport reportModel(const ModelFile& f);
nlohmann::json reportJson(const ModelReport& r);
// A table with one line per tensor and the totals; `meta` is the file's description.
std::string reportTable(const ModelReport& r, const std::string& meta);

}  // namespace cdl::core
