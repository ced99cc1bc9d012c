// The uncompressed and half-precision codecs: none (fp32), fp16 and bf16.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec/codecs.h"
#include "kernels/base/error.h"
#include "kernels/half.h"

namespace cdl::comm {

void requireFinite(const char* codec, const float* x, int64_t n, float* maxAbs) {
  const int64_t bad = kernels::firstNonFinite(x, n, maxAbs);
  CDL_CHECK(bad < 0, codec, ": element ", bad, " is ", x[bad],
            "; a lossy codec cannot encode NaN or infinity (check the loss and learning rate)");
}

namespace {

void checkNoParams(const PayloadHeader& h) {
  CDL_CHECK(h.bits == 0 && h.rounding == 0 && h.entropy == 0 && h.bucket == 0 && h.arg == 0,
            codecName(h.codec), " payload: unexpected codec parameters in the header");
}

// A codec that stores each element in `width` bytes, converted by the two functions.
class FixedWidthCodec : public Codec {
 public:
  using ToWire = void (*)(const float*, int64_t, uint8_t*);
  using FromWire = void (*)(const uint8_t*, int64_t, float*, bool);

  FixedWidthCodec(CodecId id, size_t width, bool lossless, ToWire to, FromWire from)
      : id_(id), width_(width), lossless_(lossless), to_(to), from_(from) {}

  CodecId id() const override { return id_; }
  bool summable() const override { return true; }
  bool lossless() const override { return lossless_; }

  size_t maxEncodedBytes(int64_t n, const LayerRate&) const override {
    return kHeaderBytes + static_cast<size_t>(n) * width_;
  }

  size_t encode(const float* x, int64_t n, const LayerRate& rate, uint64_t, uint8_t* out,
                size_t capacity) const override {
    CDL_CHECK(n >= 0 && (x != nullptr || n == 0), name(), ": bad input (n = ", n, ")");
    const size_t total = maxEncodedBytes(n, rate);
    CDL_CHECK(capacity >= total, name(), ": output capacity ", capacity, " < ", total);
    to_(x, n, out + kHeaderBytes);
    PayloadHeader h;
    h.codec = id_;
    h.numel = static_cast<uint64_t>(n);
    h.bodyBytes = total - kHeaderBytes;
    writeHeader(h, out);
    return total;
  }

 protected:
  void decodeBody(const PayloadHeader& h, const uint8_t* body, float* out, int64_t n,
                  bool accumulate) const override {
    checkNoParams(h);
    CDL_CHECK(h.bodyBytes == static_cast<uint64_t>(n) * width_, name(), " payload: body of ",
              h.bodyBytes, " bytes for ", n, " elements");
    from_(body, n, out, accumulate);
  }

 private:
  CodecId id_;
  size_t width_;
  bool lossless_;
  ToWire to_;
  FromWire from_;
};

void fp32ToWire(const float* x, int64_t n, uint8_t* out) {
  if (n > 0) std::memcpy(out, x, static_cast<size_t>(n) * 4);
}

void fp32FromWire(const uint8_t* in, int64_t n, float* out, bool accumulate) {
  if (!accumulate) {
    if (n > 0) std::memcpy(out, in, static_cast<size_t>(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, in + 4 * i, 4);
    out[i] += v;
  }
}

// The body may sit at any byte offset, so 16-bit values go through an aligned staging block.
template <void (*Convert)(const float*, int64_t, uint16_t*)>
void halfToWire(const float* x, int64_t n, uint8_t* out) {
  constexpr int64_t kBlock = 4096;
  uint16_t tmp[kBlock];
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t m = std::min(kBlock, n - i);
    Convert(x + i, m, tmp);
    std::memcpy(out + 2 * i, tmp, static_cast<size_t>(m) * 2);
  }
}

template <void (*Convert)(const uint16_t*, int64_t, float*, bool)>
void halfFromWire(const uint8_t* in, int64_t n, float* out, bool accumulate) {
  constexpr int64_t kBlock = 4096;
  uint16_t tmp[kBlock];
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t m = std::min(kBlock, n - i);
    std::memcpy(tmp, in + 2 * i, static_cast<size_t>(m) * 2);
    Convert(tmp, m, out + i, accumulate);
  }
}

void fp16ToWire(const float* x, int64_t n, uint8_t* out) {
  float maxAbs = 0.0f;
  requireFinite("fp16", x, n, &maxAbs);
  if (maxAbs > 65504.0f) {
    int64_t i = 0;
    while (std::fabs(x[i]) <= 65504.0f) ++i;
    CDL_THROW("fp16: element ", i, " = ", x[i],
              " overflows fp16 (|x| > 65504); use bf16 or a smaller loss scale");
  }
  halfToWire<kernels::floatToHalf>(x, n, out);
}

void bf16ToWire(const float* x, int64_t n, uint8_t* out) {
  requireFinite("bf16", x, n);
  halfToWire<kernels::floatToBf16>(x, n, out);
}

}  // namespace

CodecEntry noneCodecEntry() {
  return {CodecId::kNone, "none", {}, [] {
            return std::unique_ptr<Codec>(std::make_unique<FixedWidthCodec>(
                CodecId::kNone, 4, true, fp32ToWire, fp32FromWire));
          }};
}
CodecEntry fp16CodecEntry() {
  return {CodecId::kFp16, "fp16", {}, [] {
            return std::unique_ptr<Codec>(std::make_unique<FixedWidthCodec>(
                CodecId::kFp16, 2, false, fp16ToWire, halfFromWire<kernels::halfToFloat>));
          }};
}
CodecEntry bf16CodecEntry() {
  return {CodecId::kBf16, "bf16", {}, [] {
            return std::unique_ptr<Codec>(std::make_unique<FixedWidthCodec>(
                CodecId::kBf16, 2, false, bf16ToWire, halfFromWire<kernels::bf16ToFloat>));
          }};
}

}  // namespace cdl::comm
