// qsgd: bucketed uniform quantization (Note [Bucketed uniform quantization]) with an optional
// rANS stage over the symbols.
//
// Body: fp32 scale[numBuckets], then the symbols: packBits(sym, bits) when the entropy stage is
// none, a rANS stream (Note [Interleaved rANS stream]) when it is rans.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "comm/codec/codecs.h"
#include "comm/codec/spec.h"
#include "kernels/base/bytes.h"
#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/histogram.h"
#include "kernels/rans.h"

namespace cdl::comm {
namespace {

void checkRate(const LayerRate& r) {
  CDL_CHECK(r.bits >= 1 && r.bits <= 8, "qsgd: bits = ", r.bits, " (must be 1..8)");
  CDL_CHECK(r.bucket >= 1 && r.bucket <= (int64_t{1} << 30), "qsgd: bucket = ", r.bucket,
            " (must be 1..2^30)");
  CDL_CHECK(r.entropy == EntropyStage::kNone || r.entropy == EntropyStage::kRans,
            "qsgd: unknown entropy stage");
}

// Per-thread scratch for the symbols, reused across calls so the hot path does not allocate.
uint8_t* symbolScratch(int64_t n) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < static_cast<size_t>(n)) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

class QsgdCodec : public Codec {
 public:
  CodecId id() const override { return CodecId::kQsgd; }
  bool summable() const override { return true; }
  int64_t chunkAlignment(const LayerRate& rate) const override { return rate.bucket; }

  size_t maxEncodedBytes(int64_t n, const LayerRate& rate) const override {
    checkRate(rate);
    const size_t scales = 4 * static_cast<size_t>(kernels::numBuckets(n, rate.bucket));
    const size_t symbols = rate.entropy == EntropyStage::kRans ? kernels::ransMaxEncodedBytes(n)
                                                               : kernels::packedBytes(n, rate.bits);
    return kHeaderBytes + scales + symbols;
  }

  size_t encode(const float* x, int64_t n, const LayerRate& rate, uint64_t roundingKey,
                uint8_t* out, size_t capacity) const override {
    return encodeInto(x, n, rate, roundingKey, out, capacity, nullptr);
  }

  // The residual from the symbols and scales just computed: dequantizing them is what decoding
  // the payload would give, bit for bit, without undoing the entropy stage.
  void encodeChunk(EncodeChunk& c, const LayerRate& rate) const override {
    c.bytes = encodeInto(c.x, c.n, rate, c.roundingKey, c.out, c.capacity, c.residual);
  }

 protected:
  void decodeBody(const PayloadHeader& h, const uint8_t* body, float* out, int64_t n,
                  bool accumulate) const override;

 private:
  size_t encodeInto(const float* x, int64_t n, const LayerRate& rate, uint64_t roundingKey,
                    uint8_t* out, size_t capacity, float* residual) const {
    CDL_CHECK(n >= 0 && (x != nullptr || n == 0), "qsgd: bad input (n = ", n, ")");
    const size_t bound = maxEncodedBytes(n, rate);
    CDL_CHECK(capacity >= bound, "qsgd: output capacity ", capacity, " < ", bound);
    const int64_t nb = kernels::numBuckets(n, rate.bucket);
    uint8_t* sym = symbolScratch(n);
    std::vector<float> scales(static_cast<size_t>(nb));
    kernels::QuantizeParams qp;
    qp.bits = rate.bits;
    qp.bucket = rate.bucket;
    qp.rounding = rate.rounding;
    qp.key = roundingKey;
    kernels::quantize(x, n, qp, sym, scales.data());
    if (residual != nullptr) {
      kernels::dequantize(sym, scales.data(), n, rate.bits, rate.bucket, residual, false);
      for (int64_t i = 0; i < n; ++i) residual[i] = x[i] - residual[i];
    }

    uint8_t* body = out + kHeaderBytes;
    if (nb > 0) std::memcpy(body, scales.data(), scales.size() * 4);
    uint8_t* stream = body + scales.size() * 4;
    size_t streamBytes;
    if (rate.entropy == EntropyStage::kRans) {
      const size_t room = capacity - static_cast<size_t>(stream - out);
      streamBytes = kernels::ransEncode(sym, n, stream, room);
    } else {
      kernels::packBits(sym, n, rate.bits, stream);
      streamBytes = kernels::packedBytes(n, rate.bits);
    }
    const PayloadHeader h = qsgdHeader(n, rate, scales.size() * 4 + streamBytes);
    writeHeader(h, out);
    return kHeaderBytes + h.bodyBytes;
  }
};

void QsgdCodec::decodeBody(const PayloadHeader& h, const uint8_t* body, float* out, int64_t n,
                           bool accumulate) const {
  const int64_t nb = checkQsgdPayload(h, body, n);
  const uint64_t scaleBytes = 4 * static_cast<uint64_t>(nb);
  std::vector<float> scales(static_cast<size_t>(nb));
  if (nb > 0) std::memcpy(scales.data(), body, scaleBytes);
  const uint8_t* stream = body + scaleBytes;
  const size_t streamBytes = h.bodyBytes - scaleBytes;
  const int alphabet = static_cast<int>(kernels::quantIntervals(h.bits)) + 1;
  uint8_t* sym = symbolScratch(n);
  if (h.entropy == static_cast<uint8_t>(EntropyStage::kRans)) {
    kernels::ransDecode(stream, streamBytes, n, sym, alphabet);
  } else {
    CDL_CHECK(streamBytes == kernels::packedBytes(n, h.bits), "qsgd payload: ", streamBytes,
              " packed bytes for ", n, " symbols of ", int(h.bits), " bits");
    kernels::unpackBits(stream, n, h.bits, sym);
    uint8_t maxSym = 0;
    for (int64_t i = 0; i < n; ++i) maxSym = std::max(maxSym, sym[i]);
    CDL_CHECK(n == 0 || maxSym < alphabet, "qsgd payload: symbol ", int(maxSym), " outside the ",
              alphabet, " levels of ", int(h.bits), " bits");
  }
  kernels::dequantize(sym, scales.data(), n, h.bits, h.bucket, out, accumulate);
}

}  // namespace

PayloadHeader qsgdHeader(int64_t n, const LayerRate& rate, uint64_t bodyBytes) {
  PayloadHeader h;
  h.codec = CodecId::kQsgd;
  h.numel = static_cast<uint64_t>(n);
  h.bits = static_cast<uint8_t>(rate.bits);
  h.rounding = static_cast<uint8_t>(rate.rounding);
  h.entropy = static_cast<uint8_t>(rate.entropy);
  h.bucket = static_cast<uint32_t>(rate.bucket);
  h.bodyBytes = bodyBytes;
  return h;
}

int64_t checkQsgdPayload(const PayloadHeader& h, const uint8_t* body, int64_t n) {
  CDL_CHECK(h.bits >= 1 && h.bits <= 8, "qsgd payload: bits = ", int(h.bits));
  CDL_CHECK(h.bucket >= 1 && h.bucket <= (1u << 30), "qsgd payload: bucket = ", h.bucket);
  CDL_CHECK(h.rounding <= 1 && h.entropy <= 1 && h.arg == 0,
            "qsgd payload: bad rounding, entropy or argument field");
  const int64_t nb = kernels::numBuckets(n, h.bucket);
  CDL_CHECK(h.bodyBytes >= 4 * static_cast<uint64_t>(nb), "qsgd payload: body of ", h.bodyBytes,
            " bytes cannot hold ", nb, " scales");
  for (int64_t b = 0; b < nb; ++b) {
    const float scale = loadLE<float>(body + 4 * b);
    CDL_CHECK(std::isfinite(scale) && scale >= 0.0f, "qsgd payload: scale of bucket ", b, " is ",
              scale);
  }
  return nb;
}

CodecEntry qsgdCodecEntry() {
  std::vector<RateKey> keys = {{"bits",
                                [](const std::string& spec, const std::string& v, LayerRate* r) {
                                  r->bits = static_cast<int>(specInteger(spec, "bits", v, 1, 8));
                                },
                                [](const LayerRate& r) { return std::to_string(r.bits); }},
                               {"bucket",
                                [](const std::string& spec, const std::string& v, LayerRate* r) {
                                  r->bucket = specInteger(spec, "bucket", v, 1, int64_t{1} << 30);
                                },
                                [](const LayerRate& r) { return std::to_string(r.bucket); }},
                               {"rounding",
                                [](const std::string& spec, const std::string& v, LayerRate* r) {
                                  CDL_CHECK(v == "nearest" || v == "stochastic", "codec spec '",
                                            spec, "': rounding must be nearest or stochastic");
                                  r->rounding = v == "nearest" ? kernels::Rounding::kNearest
                                                               : kernels::Rounding::kStochastic;
                                },
                                [](const LayerRate& r) -> std::string {
                                  return r.rounding == kernels::Rounding::kNearest ? "nearest"
                                                                                   : "stochastic";
                                }},
                               entropyRateKey()};
  return {CodecId::kQsgd, "qsgd", std::move(keys),
          [] { return std::unique_ptr<Codec>(std::make_unique<QsgdCodec>()); }};
}

}  // namespace cdl::comm
