#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cdl::core {

// Note [Coded model file]
// A .cdlm file holds a trained model on its own: which network it is, and every parameter and
// buffer, the weights as entropy-coded quantization indices. All integers are little-endian.
//
//   char magic[4]   "CDLM"
//   u16  version    1
//   u16  flags      0
//   u32  metaBytes  then that many bytes of JSON: the network (name and options) and its data set
//   u32  tensors    then one table-of-contents entry per tensor:
//          u16 nameBytes, the name (a parameter or buffer name, e.g. "conv1.weight")
//          u8  kind     0 quantized weight, 1 float tensor, 2 int64 tensor
//          u8  coder    0 fp32, 1 fp16, 2 int64, 3 rANS index stream, 4 row-multiset index stream
//          u8  bits     quantized: 1..8, else 0
//          u8  signed   quantized: 1 for levels -2^(bits-1) .. 2^(bits-1)-1, 0 for 0 .. 2^bits-1
//          u8  dims     0..8, then shape[dims]        (varints)
//          f32 step     quantized: the step q > 0 (value = level * q), else 0
//          offset, length   of its bytes within the payload (varints)
//          u64 hash     xxhash64 of those bytes
//   u64  xxhash64 of everything above
//   the payload: every tensor's bytes, back to back in table order, and nothing after them.
//
// A varint is LEB128 (7 bits a byte, low bits first, the top bit set on all but the last byte),
// below 2^63 and in its shortest form. A quantized weight stores symbols s = level - lo (lo the
// lowest level), row-major: coder 3 is Note [Interleaved rANS stream] over all of them; coder 4 is
// Note [Row multiset stream] with rows = shape[0] and the remaining dimensions as columns, which
// keeps the rows but not their order: the decoder gets them sorted lexicographically by their
// symbols (the file was written in that order, Note [Canonical order]). Float tensors are fp32 or
// fp16, int64 tensors int64. Decoding checks every field, both hashes and every stream, and throws
// cdl::Error saying what is wrong; it never reads outside the bytes it is given.

enum class TensorKind : uint8_t { kQuantized = 0, kFloat = 1, kInt64 = 2 };
enum class TensorCoder : uint8_t { kFp32 = 0, kFp16 = 1, kInt64 = 2, kRans = 3, kRowMultiset = 4 };

const char* coderName(TensorCoder c);

struct ModelTensor {
  std::string name;
  std::vector<int64_t> shape;
  TensorKind kind = TensorKind::kFloat;
  TensorCoder coder = TensorCoder::kFp32;
  int bits = 0;                  // quantized only
  bool isSigned = false;         // quantized only
  float step = 0.0f;             // quantized only
  std::vector<uint8_t> symbols;  // quantized: level - lowestLevel(), row-major
  std::vector<float> values;     // float tensors (an fp16 one holds the fp16-rounded values)
  std::vector<int64_t> ints;     // int64 tensors
  std::vector<uint8_t> coded;    // the bytes as stored (set by encodeModelFile and decodeModelFile)

  int64_t numel() const;
  int lowestLevel() const { return isSigned ? -(1 << (bits - 1)) : 0; }
  // Rows and columns of a matrix view: shape[0] and the product of the rest.
  int64_t rows() const;
  int64_t cols() const;
};

struct ModelFile {
  std::string meta;  // JSON object
  std::vector<ModelTensor> tensors;
  uint64_t fileBytes = 0;  // the whole file's size (set by encodeModelFile and decodeModelFile)

  const ModelTensor* find(const std::string& name) const;
};

// The file's bytes; sets every tensor's `coded` (and rounds fp16 tensors' values to what the file
// holds). A row-multiset tensor whose plain rANS stream is smaller is stored as that (its coder
// becomes kRans; its rows are in order either way). Throws cdl::Error naming the tensor when it is
// inconsistent (symbols that do not match its shape or bits, a coder its kind cannot have, ...).
std::vector<uint8_t> encodeModelFile(ModelFile& file);

// Parses and checks data[0..len). With decodeStreams false the index streams are checked by their
// hashes only and `symbols` stay empty (inference can then decode them as it goes).
// verifyHashes false skips both hash checks; only fuzzing uses it, to reach the checks behind them.
ModelFile decodeModelFile(const uint8_t* data, size_t len, bool decodeStreams = true,
                          bool verifyHashes = true);

// Decodes a quantized tensor's symbols from its `coded` bytes.
std::vector<uint8_t> decodeSymbols(const ModelTensor& t);

// A quantized tensor's values, level * step, into out[0..numel) (its symbols decoded from `coded`
// when it holds none).
void dequantize(const ModelTensor& t, float* out);

// Limits a file must keep.
constexpr int kMaxTensorDims = 8;
constexpr int64_t kMaxTensorElements = int64_t{1} << 31;

}  // namespace cdl::core
