#include "core/model_file/model_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/model_file/model_canonical.h"
#include "core/model_file/model_report.h"
#include "kernels/base/bytes.h"
#include "kernels/base/error.h"
#include "tests/support/model_files.h"

namespace cdl::core {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<uint8_t>;

std::string decodeError(const Bytes& b, bool verify = true) {
  try {
    decodeModelFile(b.data(), b.size(), true, verify);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The rows of t's symbols in lexicographic order.
std::vector<uint8_t> sortedRows(const ModelTensor& t) {
  std::vector<std::vector<uint8_t>> rows;
  for (int64_t r = 0; r < t.rows(); ++r) {
    rows.emplace_back(t.symbols.begin() + r * t.cols(), t.symbols.begin() + (r + 1) * t.cols());
  }
  std::sort(rows.begin(), rows.end());
  std::vector<uint8_t> out;
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

TEST(ModelFile, RoundTripKeepsEveryTensorBitForBit) {
  ModelFile f = test::sampleModelFile();
  const Bytes bytes = encodeModelFile(f);
  EXPECT_EQ(f.fileBytes, bytes.size());
  const ModelFile g = decodeModelFile(bytes.data(), bytes.size());
  EXPECT_EQ(g.meta, f.meta);
  EXPECT_EQ(g.fileBytes, bytes.size());
  ASSERT_EQ(g.tensors.size(), f.tensors.size());
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const ModelTensor &a = f.tensors[i], &b = g.tensors[i];
    SCOPED_TRACE(a.name);
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.shape, a.shape);
    EXPECT_EQ(b.kind, a.kind);
    EXPECT_EQ(b.coder, a.coder);
    EXPECT_EQ(b.bits, a.bits);
    EXPECT_EQ(b.isSigned, a.isSigned);
    EXPECT_EQ(std::memcmp(&b.step, &a.step, 4), 0);
    // A row multiset comes back with its rows in lexicographic order; all else as it was.
    EXPECT_EQ(b.symbols, a.coder == TensorCoder::kRowMultiset ? sortedRows(a) : a.symbols);
    EXPECT_EQ(b.values, a.values);  // fp16 ones were rounded to what the file holds
    EXPECT_EQ(b.ints, a.ints);
    EXPECT_EQ(b.coded, a.coded);
  }
  EXPECT_NE(f.find("bn.weight")->values, test::sampleModelFile().find("bn.weight")->values);
}

TEST(ModelFile, EveryTruncationIsRejectedWithOneError) {
  ModelFile f = test::sampleModelFile();
  const Bytes bytes = encodeModelFile(f);
  for (size_t len = 0; len < bytes.size(); ++len) {
    const std::string e = decodeError(Bytes(bytes.begin(), bytes.begin() + len));
    ASSERT_FALSE(e.empty()) << "length " << len;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  Bytes longer = bytes;
  longer.push_back(0);
  EXPECT_THAT(decodeError(longer), HasSubstr("1 bytes after the last tensor"));
}

TEST(ModelFile, EverySingleBitFlipIsRejected) {
  ModelFile f = test::sampleModelFile(6, 5);
  const Bytes bytes = encodeModelFile(f);
  for (size_t bit = 0; bit < 8 * bytes.size(); ++bit) {
    Bytes bad = bytes;
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    ASSERT_FALSE(decodeError(bad).empty()) << "bit " << bit;
  }
}

TEST(ModelFile, CorruptTensorBytesNameTheTensor) {
  ModelFile f = test::sampleModelFile();
  Bytes bytes = encodeModelFile(f);
  bytes[bytes.size() - 3] ^= 1;  // inside the last tensor, the int64 one
  EXPECT_THAT(decodeError(bytes), HasSubstr("tensor 'bn.num_batches_tracked': hash mismatch"));
  bytes = encodeModelFile(f);
  bytes[0] = 'X';
  EXPECT_THAT(decodeError(bytes), HasSubstr("not a .cdlm model file"));
}

// Behind the hashes (as a forged file would be): the fields and streams are checked themselves.
TEST(ModelFile, FieldsAndStreamsAreCheckedBehindTheHashes) {
  ModelFile f = test::sampleModelFile();
  const Bytes bytes = encodeModelFile(f);
  size_t payload = bytes.size();
  for (const ModelTensor& t : f.tensors) payload -= t.coded.size();
  Bytes bad = bytes;
  bad[payload] = 9;  // the first tensor's rANS mode byte
  EXPECT_THAT(decodeError(bad, false), HasSubstr("tensor 'fc1.weight': "));
  EXPECT_THAT(decodeError(bad, false), HasSubstr("unknown mode 9"));
  bad = bytes;
  const size_t bias = payload + f.tensors[0].coded.size() + f.tensors[1].coded.size();
  storeLE<uint32_t>(bad.data() + bias + 4, 0x7fc00000u);  // fc1.bias[1] = NaN
  EXPECT_THAT(decodeError(bad, false), HasSubstr("tensor 'fc1.bias' holds a NaN or Inf"));
  EXPECT_THAT(decodeError(bad), HasSubstr("tensor 'fc1.bias': hash mismatch"));
}

TEST(ModelFile, InconsistentTensorsAreRefusedAtEncodeNamingThem) {
  auto encodeError = [](ModelFile f) {
    try {
      encodeModelFile(f);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  ModelFile f = test::sampleModelFile();
  f.tensors[0].symbols[3] = 16;
  EXPECT_THAT(encodeError(f), HasSubstr("tensor 'fc1.weight': symbol 16 is not below 2^4"));
  f = test::sampleModelFile();
  f.tensors[2].values[1] = std::nanf("");
  EXPECT_THAT(encodeError(f), HasSubstr("tensor 'fc1.bias' holds a NaN or Inf"));
  f = test::sampleModelFile();
  f.tensors[2].coder = TensorCoder::kRans;
  EXPECT_THAT(encodeError(f), HasSubstr("float tensor 'fc1.bias' with coder rans"));
  f = test::sampleModelFile();
  f.tensors[0].step = -1.0f;
  EXPECT_THAT(encodeError(f), HasSubstr("tensor 'fc1.weight': step -1"));
  f = test::sampleModelFile();
  f.tensors[0].shape = {24, 11};
  EXPECT_THAT(encodeError(f), HasSubstr("240 symbols for 264 elements"));
}

// A two-layer network on integer levels: relu(W1 x + b1) then W2, exactly, for the canonical
// order tests.
std::vector<int64_t> forward(const ModelFile& f, const std::vector<int>& x) {
  const ModelTensor& w1 = *f.find("fc1.weight");
  const ModelTensor& b1 = *f.find("fc1.bias");
  const ModelTensor& w2 = *f.find("fc2.weight");
  std::vector<int64_t> h(w1.rows()), y(w2.rows(), 0);
  for (int64_t u = 0; u < w1.rows(); ++u) {
    int64_t s = static_cast<int64_t>(b1.values[u]);
    for (int64_t k = 0; k < w1.cols(); ++k) s += (w1.symbols[u * w1.cols() + k] - 8) * x[k];
    h[u] = std::max<int64_t>(0, s);
  }
  for (int64_t o = 0; o < w2.rows(); ++o) {
    for (int64_t u = 0; u < w2.cols(); ++u) y[o] += (w2.symbols[o * w2.cols() + u] - 8) * h[u];
  }
  return y;
}

ModelFile twoLayers(int64_t units, int64_t distinct) {
  ModelFile f;
  f.meta = "{}";
  f.tensors.push_back(
      test::quantizedTensor("fc1.weight", units, 12, 4, TensorCoder::kRans, distinct, 11));
  ModelTensor b = test::floatTensor("fc1.bias", {units}, TensorCoder::kFp32, 12);
  for (auto& v : b.values) v = std::round(4 * v);
  f.tensors.push_back(b);
  f.tensors.push_back(test::quantizedTensor("fc2.weight", 5, units, 4, TensorCoder::kRans, 5, 13));
  return f;
}

TEST(CanonicalOrder, PermutesUnitsWithTheirNextLayerInputsSoTheNetworkIsUnchanged) {
  ModelFile f = twoLayers(40, 25);
  const ModelFile before = f;
  const auto perms = canonicalize(f, {{"fc1.weight", {"fc1.bias"}, "fc2.weight", 1}});
  ASSERT_EQ(perms.size(), 1u);
  EXPECT_NE(perms[0], [] {
    std::vector<int64_t> id(40);
    for (int i = 0; i < 40; ++i) id[i] = i;
    return id;
  }());
  EXPECT_EQ(f.find("fc1.weight")->coder, TensorCoder::kRowMultiset);
  EXPECT_EQ(f.find("fc1.weight")->symbols, sortedRows(*before.find("fc1.weight")));
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> x(12);
    for (int k = 0; k < 12; ++k) x[k] = (trial * 7 + k * 3) % 11 - 4;
    EXPECT_EQ(forward(f, x), forward(before, x));
  }
  // Canonical order is a function of the network: a shuffled copy reaches the same file.
  ModelFile shuffled = before;
  canonicalize(shuffled, {{"fc1.weight", {"fc1.bias"}, "fc2.weight", 1}});
  ModelFile again = f;
  canonicalize(again, {{"fc1.weight", {"fc1.bias"}, "fc2.weight", 1}});
  EXPECT_EQ(again.find("fc2.weight")->symbols, f.find("fc2.weight")->symbols);
  EXPECT_EQ(encodeModelFile(shuffled), encodeModelFile(f));
}

TEST(CanonicalOrder, TheFileDecodesToTheCanonicalNetworkAndSavesCloseToTheBound) {
  ModelFile plain = twoLayers(600, 300);
  ModelFile canonical = plain;
  canonicalize(canonical, {{"fc1.weight", {"fc1.bias"}, "fc2.weight", 1}});
  const Bytes bytes = encodeModelFile(canonical);
  const ModelFile back = decodeModelFile(bytes.data(), bytes.size());
  for (const char* name : {"fc1.weight", "fc1.bias", "fc2.weight"}) {
    EXPECT_EQ(back.find(name)->symbols, canonical.find(name)->symbols) << name;
    EXPECT_EQ(back.find(name)->values, canonical.find(name)->values) << name;
  }
  const TensorReport r = reportModel(back).tensors[0];
  ASSERT_EQ(r.coder, "row-multiset");
  EXPECT_GT(r.permutationBits, 3000.0);
  EXPECT_NEAR(r.savedBits, r.permutationBits, 0.01 * r.permutationBits);
  encodeModelFile(plain);
  EXPECT_NEAR(8.0 * (double(plain.fileBytes) - double(canonical.fileBytes)), r.permutationBits,
              0.01 * r.permutationBits + 8 * 160);
}

TEST(CanonicalOrder, GroupsThatDoNotFitTheFileNameTheTensor) {
  ModelFile f = twoLayers(8, 8);
  EXPECT_THROW(canonicalize(f, {{"fc9.weight", {}, "fc2.weight", 1}}), Error);
  try {
    canonicalize(f, {{"fc1.weight", {"fc1.bias"}, "fc2.weight", 2}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'fc2.weight' has 8 inputs, not 2 per unit of 8"));
  }
}

TEST(ModelReport, CountsBytesBitsPerWeightAndTheRatioToFp32) {
  ModelFile f = test::sampleModelFile();
  encodeModelFile(f);
  const ModelReport r = reportModel(f);
  EXPECT_EQ(r.fileBytes, f.fileBytes);
  EXPECT_EQ(r.fp32Bytes, 4u * (240 + 240 + 24 + 24 + 1 + 0 + 1));
  EXPECT_EQ(r.quantizedWeights, 480);
  EXPECT_EQ(r.quantizedBytes, f.tensors[0].coded.size() + f.tensors[1].coded.size());
  EXPECT_DOUBLE_EQ(r.ratioToFp32, double(r.fp32Bytes) / double(r.fileBytes));
  // Coded at close to the entropy of the symbols.
  EXPECT_LT(double(r.tensors[0].codedBytes), r.tensors[0].entropyBytes * 1.1 + 64);
  EXPECT_EQ(reportJson(r)["tensors"][1]["coder"], "row-multiset");
}

}  // namespace
}  // namespace cdl::core
