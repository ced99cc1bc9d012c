#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cdl::comm {

// Note [Payload wire format]
// Every encoded tensor is one payload: a fixed 48-byte header, then a codec-specific body.
// All integers are little-endian (Note [Byte order]).
//
//   off size field
//   0   4    magic "CDLP"
//   4   1    format version (kWireVersion)
//   5   1    codec id (CodecId)
//   6   1    element dtype of the original tensor (0 = fp32)
//   7   1    flags, must be 0
//   8   8    element count
//   16  1    bits           (qsgd; else 0)
//   17  1    rounding       (qsgd: 0 nearest, 1 stochastic; else 0)
//   18  1    entropy stage  (qsgd, topk: 0 none, 1 rans; else 0)
//   19  1    reserved, must be 0
//   20  4    bucket size    (qsgd; else 0)
//   24  8    codec argument (topk: number of kept elements; else 0)
//   32  8    body length in bytes; the payload is exactly 48 + this long
//   40  8    xxhash64 of the body, seeded with the xxhash64 (seed 0) of bytes [0, 40)
//
// The hash covers the header too, so any single flipped bit anywhere is caught before a codec
// looks at the body; decoders still validate every field and length on their own, so a payload
// with a forged hash can give an error but never an out-of-bounds access.

constexpr uint32_t kWireMagic = 0x504c4443u;  // "CDLP" in memory order
constexpr uint8_t kWireVersion = 1;
constexpr size_t kHeaderBytes = 48;

// The payload codecs (comm/codec/codec.h), as the header names them.
enum class CodecId : uint8_t { kNone = 0, kFp16 = 1, kBf16 = 2, kQsgd = 3, kTopk = 4 };

struct PayloadHeader {
  CodecId codec = CodecId::kNone;
  uint8_t dtype = 0;
  uint64_t numel = 0;
  uint8_t bits = 0;
  uint8_t rounding = 0;
  uint8_t entropy = 0;
  uint32_t bucket = 0;
  uint64_t arg = 0;
  uint64_t bodyBytes = 0;
};

// The codec's name ("none", "fp16", "bf16", "qsgd", "topk"), or "codec#N" for an unknown id.
std::string codecName(CodecId id);

// Writes the header for the body at out + kHeaderBytes (h.bodyBytes long, already in place) and
// seals it with the hash.
void writeHeader(const PayloadHeader& h, uint8_t* out);

// Parses and checks the header of in[0..len): magic, version, known codec and dtype, zero flags and
// reserved bytes, the exact length and the hash. Throws cdl::Error saying which check failed.
PayloadHeader readHeader(const uint8_t* in, size_t len);

}  // namespace cdl::comm
