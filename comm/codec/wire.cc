#include "comm/codec/wire.h"

#include <xxhash.h>

#include "comm/codec/registry.h"
#include "kernels/base/bytes.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

constexpr size_t kHashedHeaderBytes = 40;

uint64_t payloadHash(const uint8_t* payload, uint64_t bodyBytes) {
  // The hash of the header seeds the hash of the body: one pass, no hashing state to allocate.
  return XXH64(payload + kHeaderBytes, bodyBytes, XXH64(payload, kHashedHeaderBytes, 0));
}

}  // namespace

std::string codecName(CodecId id) {
  if (const CodecEntry* e = findCodec(id)) return e->name;
  return "codec#" + std::to_string(static_cast<int>(id));
}

void writeHeader(const PayloadHeader& h, uint8_t* out) {
  storeLE<uint32_t>(out + 0, kWireMagic);
  storeLE<uint8_t>(out + 4, kWireVersion);
  storeLE<uint8_t>(out + 5, static_cast<uint8_t>(h.codec));
  storeLE<uint8_t>(out + 6, h.dtype);
  storeLE<uint8_t>(out + 7, 0);
  storeLE<uint64_t>(out + 8, h.numel);
  storeLE<uint8_t>(out + 16, h.bits);
  storeLE<uint8_t>(out + 17, h.rounding);
  storeLE<uint8_t>(out + 18, h.entropy);
  storeLE<uint8_t>(out + 19, 0);
  storeLE<uint32_t>(out + 20, h.bucket);
  storeLE<uint64_t>(out + 24, h.arg);
  storeLE<uint64_t>(out + 32, h.bodyBytes);
  storeLE<uint64_t>(out + 40, payloadHash(out, h.bodyBytes));
}

PayloadHeader readHeader(const uint8_t* in, size_t len) {
  CDL_CHECK(in != nullptr || len == 0, "payload: null buffer");
  CDL_CHECK(len >= kHeaderBytes, "payload: ", len, " bytes is shorter than the ", kHeaderBytes,
            "-byte header (truncated?)");
  CDL_CHECK(loadLE<uint32_t>(in) == kWireMagic, "payload: bad magic 0x", std::hex,
            loadLE<uint32_t>(in), " (not a cdl payload)");
  CDL_CHECK(in[4] == kWireVersion, "payload: format version ", int(in[4]), " but this build reads ",
            int(kWireVersion));
  PayloadHeader h;
  CDL_CHECK(findCodec(static_cast<CodecId>(in[5])) != nullptr, "payload: unknown codec id ",
            int(in[5]));
  h.codec = static_cast<CodecId>(in[5]);
  h.dtype = in[6];
  CDL_CHECK(h.dtype == 0, "payload: unknown dtype ", int(h.dtype));
  CDL_CHECK(in[7] == 0 && in[19] == 0, "payload: reserved header bytes are not zero");
  h.numel = loadLE<uint64_t>(in + 8);
  h.bits = in[16];
  h.rounding = in[17];
  h.entropy = in[18];
  h.bucket = loadLE<uint32_t>(in + 20);
  h.arg = loadLE<uint64_t>(in + 24);
  h.bodyBytes = loadLE<uint64_t>(in + 32);
  CDL_CHECK(h.bodyBytes == len - kHeaderBytes, "payload: header says ", h.bodyBytes,
            " body bytes but ", len - kHeaderBytes, " are present (truncated or padded)");
  const uint64_t want = loadLE<uint64_t>(in + 40);
  CDL_CHECK(payloadHash(in, h.bodyBytes) == want,
            "payload: xxhash64 mismatch (corrupted in transit)");
  return h;
}

}  // namespace cdl::comm
