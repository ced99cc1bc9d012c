// libFuzzer target: decoding arbitrary bytes as a payload must either succeed or throw cdl::Error,
// never crash or touch memory it does not own. Each input is tried twice: as given (exercising
// the header checks) and with its header hash resealed (so the mutated body reaches the codec's
// own validation, as a payload with a forged hash would).
#include <cstdint>
#include <cstring>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/codec/registry.h"
#include "comm/codec/wire.h"
#include "kernels/base/error.h"

namespace {

constexpr uint64_t kMaxElements = 1 << 20;

void tryDecode(const uint8_t* data, size_t size) {
  if (size < cdl::comm::kHeaderBytes ||
      cdl::comm::findCodec(static_cast<cdl::comm::CodecId>(data[5])) == nullptr) {
    return;
  }
  uint64_t numel;
  std::memcpy(&numel, data + 8, 8);
  if (numel > kMaxElements) return;
  std::vector<float> out(numel, 1.0f);
  try {
    cdl::comm::makeCodec(static_cast<cdl::comm::CodecId>(data[5]))
        ->decode(data, size, out.data(), static_cast<int64_t>(numel), (data[6] & 1) != 0);
  } catch (const cdl::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tryDecode(data, size);
  if (size >= cdl::comm::kHeaderBytes) {
    std::vector<uint8_t> sealed(data, data + size);
    cdl::comm::PayloadHeader h;
    h.codec = static_cast<cdl::comm::CodecId>(sealed[5]);
    h.dtype = sealed[6];
    std::memcpy(&h.numel, &sealed[8], 8);
    h.bits = sealed[16];
    h.rounding = sealed[17];
    h.entropy = sealed[18];
    std::memcpy(&h.bucket, &sealed[20], 4);
    std::memcpy(&h.arg, &sealed[24], 8);
    h.bodyBytes = size - cdl::comm::kHeaderBytes;
    cdl::comm::writeHeader(h, sealed.data());
    tryDecode(sealed.data(), sealed.size());
  }
  return 0;
}
