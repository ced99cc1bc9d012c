#include "core/model_file/model_report.h"

#include <cstdio>

#include "kernels/histogram.h"
#include "kernels/row_multiset.h"

namespace cdl::core {
namespace {

std::string shapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

TensorReport reportTensor(const ModelTensor& t) {
  TensorReport r;
  r.name = t.name;
  r.shape = t.shape;
  r.coder = coderName(t.coder);
  r.bits = t.bits;
  r.elements = t.numel();
  r.codedBytes = t.coded.size();
  r.bitsPerElement = r.elements > 0 ? 8.0 * double(r.codedBytes) / double(r.elements) : 0.0;
  if (t.kind != TensorKind::kQuantized) return r;
  const std::vector<uint8_t> sym = t.symbols.empty() ? decodeSymbols(t) : t.symbols;
  uint64_t counts[256];
  kernels::histogram(sym.data(), r.elements, counts);
  r.entropyBytes = kernels::entropyBits(counts) / 8.0;
  if (t.coder == TensorCoder::kRowMultiset) {
    const int alphabet = 1 << t.bits;
    std::vector<uint8_t> ordered(kernels::rowMultisetMaxEncodedBytes(t.rows(), t.cols(), alphabet));
    const size_t orderedBytes = kernels::rowMultisetEncode(sym.data(), t.rows(), t.cols(), alphabet,
                                                           true, ordered.data(), ordered.size());
    r.permutationBits = kernels::rowPermutationBits(sym.data(), t.rows(), t.cols());
    r.savedBits = 8.0 * (double(orderedBytes) - double(r.codedBytes));
  }
  return r;
}

}  // namespace

ModelReport reportModel(const ModelFile& f) {
  ModelReport r;
  r.fileBytes = f.fileBytes;
  for (const ModelTensor& t : f.tensors) {
    r.tensors.push_back(reportTensor(t));
    const TensorReport& tr = r.tensors.back();
    r.fp32Bytes += 4 * static_cast<uint64_t>(tr.elements);
    if (t.kind == TensorKind::kQuantized) {
      r.quantizedWeights += tr.elements;
      r.quantizedBytes += tr.codedBytes;
    }
  }
  r.ratioToFp32 = r.fileBytes > 0 ? double(r.fp32Bytes) / double(r.fileBytes) : 0.0;
  r.bitsPerWeight =
      r.quantizedWeights > 0 ? 8.0 * double(r.quantizedBytes) / double(r.quantizedWeights) : 0.0;
  return r;
}

nlohmann::json reportJson(const ModelReport& r) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorReport& t : r.tensors) {
    nlohmann::json j = {{"name", t.name},
                        {"shape", t.shape},
                        {"coder", t.coder},
                        {"elements", t.elements},
                        {"coded_bytes", t.codedBytes},
                        {"bits_per_element", t.bitsPerElement}};
    if (t.bits > 0) {
      j["bits"] = t.bits;
      j["entropy_bytes"] = t.entropyBytes;
    }
    if (t.coder == "row-multiset") {
      j["permutation_bound_bits"] = t.permutationBits;
      j["canonical_saving_bits"] = t.savedBits;
    }
    tensors.push_back(j);
  }
  return {{"file_bytes", r.fileBytes},
          {"fp32_bytes", r.fp32Bytes},
          {"ratio_to_fp32", r.ratioToFp32},
          {"quantized_weights", r.quantizedWeights},
          {"quantized_bytes", r.quantizedBytes},
          {"bits_per_weight", r.bitsPerWeight},
          {"tensors", tensors}};
}

std::string reportTable(const ModelReport& r, const std::string& meta) {
  std::string out = "model: " + meta + "\n";
  char line[512];
  std::snprintf(line, sizeof(line), "%-28s %-16s %-12s %4s %10s %8s %12s %s\n", "tensor", "shape",
                "coder", "bits", "bytes", "bits/el", "bound bytes", "canonical saving / bound");
  out += line;
  for (const TensorReport& t : r.tensors) {
    std::string bound = t.bits > 0 ? std::to_string(static_cast<long long>(t.entropyBytes + 0.5))
                                   : std::string("-");
    std::string saving = "-";
    if (t.coder == "row-multiset") {
      char s[96];
      std::snprintf(s, sizeof(s), "%.0f / %.0f bits (%.1f%%)", t.savedBits, t.permutationBits,
                    t.permutationBits > 0 ? 100.0 * t.savedBits / t.permutationBits : 0.0);
      saving = s;
    }
    std::snprintf(line, sizeof(line), "%-28s %-16s %-12s %4d %10llu %8.3f %12s %s\n",
                  t.name.c_str(), shapeText(t.shape).c_str(), t.coder.c_str(), t.bits,
                  static_cast<unsigned long long>(t.codedBytes), t.bitsPerElement, bound.c_str(),
                  saving.c_str());
    out += line;
  }
  std::snprintf(line, sizeof(line),
                "total: %llu bytes (fp32 %llu, %.1fx smaller); %lld quantized weights in %llu "
                "bytes, %.3f bits per weight\n",
                static_cast<unsigned long long>(r.fileBytes),
                static_cast<unsigned long long>(r.fp32Bytes), r.ratioToFp32,
                static_cast<long long>(r.quantizedWeights),
                static_cast<unsigned long long>(r.quantizedBytes), r.bitsPerWeight);
  return out + line;
}

}  // namespace cdl::core
