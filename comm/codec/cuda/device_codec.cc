// The device codecs' dispatch and the fixed-width ones: none (fp32), fp16 and bf16, as
// comm/codec/codec_float.cc.
#include "comm/codec/cuda/device_codec.h"

#include <cuda_runtime_api.h>

#include <limits>

#include "comm/codec/cuda/device_codec_internal.h"
#include "comm/codec/cuda/staging.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/half.h"
#include "kernels/cuda/residual.h"
#include "kernels/cuda/scratch.h"

namespace cdl::comm::cuda {
namespace {

constexpr float kHalfMax = 65504.0f;

size_t widthOf(CodecId id) { return id == CodecId::kNone ? 4 : 2; }

// The checks of fp16ToWire / bf16ToWire (requireFinite, then fp16's overflow), worded as there.
void requireCastable(CodecId id, const float* x_dev, int64_t n, cudaStream_t stream) {
  const char* codec = id == CodecId::kFp16 ? "fp16" : "bf16";
  kernels::cuda::DeviceScratch found(2 * sizeof(int64_t), stream);
  int64_t* firstBad = found.as<int64_t>();
  const float limit = id == CodecId::kFp16 ? kHalfMax : std::numeric_limits<float>::max();
  kernels::cuda::scanFinite(x_dev, n, limit, firstBad, firstBad + 1, stream);
  int64_t first[2];
  kernels::cuda::copyToHost(first, firstBad, sizeof(first), stream);
  if (first[0] >= 0) {
    CDL_THROW(codec, ": element ", first[0], " is ",
              kernels::cuda::readBack(x_dev + first[0], stream),
              "; a lossy codec cannot encode NaN or infinity (check the loss and learning rate)");
  }
  if (first[1] >= 0) {
    CDL_THROW("fp16: element ", first[1], " = ", kernels::cuda::readBack(x_dev + first[1], stream),
              " overflows fp16 (|x| > 65504); use bf16 or a smaller loss scale");
  }
}

size_t encodeFixed(CodecId id, const float* x_dev, int64_t n, const LayerRate& rate,
                   uint8_t* out_dev, size_t capacity, cudaStream_t stream) {
  const auto codec = makeCodec(id);
  CDL_CHECK(n >= 0 && (x_dev != nullptr || n == 0), codec->name(), ": bad input (n = ", n, ")");
  const size_t total = codec->maxEncodedBytes(n, rate);
  CDL_CHECK(capacity >= total, codec->name(), ": output capacity ", capacity, " < ", total);
  uint8_t* body = out_dev + kHeaderBytes;
  if (id == CodecId::kNone) {
    if (n > 0) {
      CDL_CUDA_CHECK(cudaMemcpyAsync(body, x_dev, static_cast<size_t>(n) * 4,
                                     cudaMemcpyDeviceToDevice, stream));
    }
  } else {
    requireCastable(id, x_dev, n, stream);
    if (id == CodecId::kFp16) {
      kernels::cuda::floatToHalf(x_dev, n, body, stream);
    } else {
      kernels::cuda::floatToBf16(x_dev, n, body, stream);
    }
  }
  PayloadHeader h;
  h.codec = id;
  h.numel = static_cast<uint64_t>(n);
  h.bodyBytes = total - kHeaderBytes;
  sealPayload(h, out_dev, stream);
  return total;
}

void decodeFixed(const PayloadHeader& h, const uint8_t* body_dev, float* out_dev, int64_t n,
                 bool accumulate, cudaStream_t stream) {
  CDL_CHECK(h.bits == 0 && h.rounding == 0 && h.entropy == 0 && h.bucket == 0 && h.arg == 0,
            codecName(h.codec), " payload: unexpected codec parameters in the header");
  CDL_CHECK(h.bodyBytes == static_cast<uint64_t>(n) * widthOf(h.codec), codecName(h.codec),
            " payload: body of ", h.bodyBytes, " bytes for ", n, " elements");
  if (h.codec == CodecId::kNone && !accumulate) {
    if (n > 0) {
      CDL_CUDA_CHECK(cudaMemcpyAsync(out_dev, body_dev, static_cast<size_t>(n) * 4,
                                     cudaMemcpyDeviceToDevice, stream));
    }
  } else if (h.codec == CodecId::kNone) {
    kernels::cuda::fp32ToFloat(body_dev, n, out_dev, accumulate, stream);
  } else if (h.codec == CodecId::kFp16) {
    kernels::cuda::halfToFloat(body_dev, n, out_dev, accumulate, stream);
  } else {
    kernels::cuda::bf16ToFloat(body_dev, n, out_dev, accumulate, stream);
  }
}

}  // namespace

bool hasDeviceCodec(CodecId id) {
  return id == CodecId::kNone || id == CodecId::kFp16 || id == CodecId::kBf16 ||
         id == CodecId::kQsgd;
}

size_t encode(CodecId id, const float* x_dev, int64_t n, const LayerRate& rate,
              uint64_t roundingKey, uint8_t* out_dev, size_t capacity, cudaStream_t stream,
              float* residual_dev) {
  CDL_CHECK(hasDeviceCodec(id), "codec '", codecName(id),
            "' has no device form; encode a host copy with makeCodec(id)->encode");
  CDL_CHECK(out_dev != nullptr, codecName(id), ": null output buffer");
  if (id == CodecId::kQsgd) {
    return detail::encodeQsgd(x_dev, n, rate, roundingKey, out_dev, capacity, residual_dev, stream);
  }
  const size_t bytes = encodeFixed(id, x_dev, n, rate, out_dev, capacity, stream);
  if (residual_dev != nullptr) {
    decode(out_dev, bytes, residual_dev, n, /*accumulate=*/false, stream);
    kernels::cuda::subtractFrom(x_dev, residual_dev, n, stream);
  }
  return bytes;
}

void decode(const uint8_t* in_dev, size_t len, float* out_dev, int64_t n, bool accumulate,
            cudaStream_t stream) {
  CDL_CHECK(in_dev != nullptr || len == 0, "payload: null buffer");
  const uint8_t* host = stagePayload(in_dev, len, stream);
  const PayloadHeader h = readHeader(host, len);
  CDL_CHECK(hasDeviceCodec(h.codec), "payload: codec '", codecName(h.codec),
            "' has no device decoder; decode a host copy with makeCodec(id)->decode");
  CDL_CHECK(n >= 0 && h.numel == static_cast<uint64_t>(n), "payload: holds ", h.numel,
            " elements but the destination has ", n);
  CDL_CHECK(out_dev != nullptr || n == 0, "payload: null destination");
  if (h.codec == CodecId::kQsgd) {
    detail::decodeQsgd(h, in_dev + kHeaderBytes, host + kHeaderBytes, out_dev, n, accumulate,
                       stream);
  } else {
    decodeFixed(h, in_dev + kHeaderBytes, out_dev, n, accumulate, stream);
  }
}

}  // namespace cdl::comm::cuda
