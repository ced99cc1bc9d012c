// qsgd on the device: comm/codec/codec_qsgd.cc's payload (fp32 scales, then the packed or rANS
// coded symbols) from the GPU twins of its kernels.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>

#include "comm/codec/codecs.h"
#include "comm/codec/cuda/device_codec_internal.h"
#include "comm/codec/cuda/staging.h"
#include "kernels/base/bytes.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/cuda/bitpack.h"
#include "kernels/cuda/quantize.h"
#include "kernels/cuda/rans.h"
#include "kernels/cuda/residual.h"
#include "kernels/cuda/scratch.h"
#include "kernels/quantize.h"

namespace cdl::comm::cuda::detail {
namespace {

using kernels::cuda::DeviceScratch;

// The symbols of x_dev, with the scales written straight into the payload body (any alignment:
// a device-to-device copy); with residual_dev, also x - the dequantized symbols, which is what a
// decode of the payload gives, without undoing the entropy stage (Note [Codec batches]).
void quantizeInto(const float* x_dev, int64_t n, const LayerRate& rate, uint64_t roundingKey,
                  uint8_t* sym_dev, uint8_t* scales_out, float* residual_dev, cudaStream_t stream) {
  const int64_t nb = kernels::numBuckets(n, rate.bucket);
  DeviceScratch scales(4 * static_cast<size_t>(nb), stream);
  DeviceScratch firstBad(sizeof(int64_t), stream);
  kernels::QuantizeParams qp;
  qp.bits = rate.bits;
  qp.bucket = rate.bucket;
  qp.rounding = rate.rounding;
  qp.key = roundingKey;
  kernels::cuda::quantizeAsync(x_dev, n, qp, sym_dev, scales.as<float>(), firstBad.as<int64_t>(),
                               stream);
  kernels::cuda::throwIfNonFinite(firstBad.as<int64_t>(), x_dev, stream);
  if (residual_dev != nullptr) {
    kernels::cuda::dequantize(sym_dev, scales.as<float>(), n, rate.bits, rate.bucket, residual_dev,
                              /*accumulate=*/false, stream);
    kernels::cuda::subtractFrom(x_dev, residual_dev, n, stream);
  }
  if (nb > 0) {
    CDL_CUDA_CHECK(cudaMemcpyAsync(scales_out, scales.as<float>(), 4 * static_cast<size_t>(nb),
                                   cudaMemcpyDeviceToDevice, stream));
  }
}

// Symbols of the body's packed form, checked against the alphabet as the CPU does.
void unpackChecked(const uint8_t* stream_dev, size_t streamBytes, int64_t n, int bits, int alphabet,
                   uint8_t* sym_dev, cudaStream_t stream) {
  CDL_CHECK(streamBytes == kernels::packedBytes(n, bits), "qsgd payload: ", streamBytes,
            " packed bytes for ", n, " symbols of ", bits, " bits");
  DeviceScratch firstBad(sizeof(int64_t), stream);
  kernels::cuda::unpackBits(stream_dev, n, bits, sym_dev, alphabet, firstBad.as<int64_t>(), stream);
  const int64_t bad = kernels::cuda::readBack(firstBad.as<int64_t>(), stream);
  CDL_CHECK(bad < 0, "qsgd payload: symbol ", int(kernels::cuda::readBack(sym_dev + bad, stream)),
            " at index ", bad, " outside the ", alphabet, " levels of ", bits, " bits");
}

}  // namespace

size_t encodeQsgd(const float* x_dev, int64_t n, const LayerRate& rate, uint64_t roundingKey,
                  uint8_t* out_dev, size_t capacity, float* residual_dev, cudaStream_t stream) {
  CDL_CHECK(n >= 0 && (x_dev != nullptr || n == 0), "qsgd: bad input (n = ", n, ")");
  const size_t bound = makeCodec(CodecId::kQsgd)->maxEncodedBytes(n, rate);  // checks the rate
  CDL_CHECK(capacity >= bound, "qsgd: output capacity ", capacity, " < ", bound);
  const size_t scaleBytes = 4 * static_cast<size_t>(kernels::numBuckets(n, rate.bucket));
  DeviceScratch sym(static_cast<size_t>(n), stream);
  quantizeInto(x_dev, n, rate, roundingKey, sym.as<uint8_t>(), out_dev + kHeaderBytes, residual_dev,
               stream);

  uint8_t* symbols = out_dev + kHeaderBytes + scaleBytes;
  size_t streamBytes;
  if (rate.entropy == EntropyStage::kRans) {
    const size_t room = capacity - kHeaderBytes - scaleBytes;
    streamBytes = kernels::cuda::ransEncode(sym.as<uint8_t>(), n, symbols, room, {}, stream);
  } else {
    kernels::cuda::packBits(sym.as<uint8_t>(), n, rate.bits, symbols, stream);
    streamBytes = kernels::packedBytes(n, rate.bits);
  }
  const PayloadHeader h = qsgdHeader(n, rate, scaleBytes + streamBytes);
  sealPayload(h, out_dev, stream);
  return kHeaderBytes + h.bodyBytes;
}

void decodeQsgd(const PayloadHeader& h, const uint8_t* body_dev, const uint8_t* body_host,
                float* out_dev, int64_t n, bool accumulate, cudaStream_t stream) {
  const int64_t nb = checkQsgdPayload(h, body_host, n);
  const size_t scaleBytes = 4 * static_cast<size_t>(nb);
  const uint8_t* stream_dev = body_dev + scaleBytes;
  const size_t streamBytes = static_cast<size_t>(h.bodyBytes) - scaleBytes;
  const int alphabet = static_cast<int>(kernels::quantIntervals(h.bits)) + 1;
  DeviceScratch sym(static_cast<size_t>(n), stream);
  if (h.entropy == static_cast<uint8_t>(EntropyStage::kRans)) {
    kernels::cuda::ransDecode(stream_dev, streamBytes, n, sym.as<uint8_t>(), alphabet, stream);
  } else {
    unpackChecked(stream_dev, streamBytes, n, h.bits, alphabet, sym.as<uint8_t>(), stream);
  }
  // The dequantize kernel reads the scales as floats: in place when the body allows it.
  const float* scales = reinterpret_cast<const float*>(body_dev);
  DeviceScratch aligned(reinterpret_cast<uintptr_t>(body_dev) % 4 == 0 ? 0 : scaleBytes, stream);
  if (reinterpret_cast<uintptr_t>(body_dev) % 4 != 0) {
    kernels::cuda::copyToDevice(aligned.as<float>(), body_host, scaleBytes, stream);
    scales = aligned.as<float>();
  }
  kernels::cuda::dequantize(sym.as<uint8_t>(), scales, n, h.bits, h.bucket, out_dev, accumulate,
                            stream);
}

}  // namespace cdl::comm::cuda::detail
