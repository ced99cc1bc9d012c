#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "comm/codec/codec.h"

namespace cdl::comm::cuda {

// Note [Device payload codecs]
// The payload codecs none, fp16, bf16 and qsgd (any bits, either rounding, entropy none or rans)
// on device buffers, writing the very payloads their CPU classes write (Note [Payload wire
// format]): the same header and body bytes for the same input, rate and rounding key, so either
// side decodes what the other encodes and tests compare them byte for byte. Quantization, bit
// packing, casts and the rANS blocks run on the device (kernels/cuda); what stays on the host is
// small or inherently serial: the rANS frequency model, the header and its hash (Note [Payload
// hash on the host]). Top-k has no device codec: its selection and index coding stay on the CPU.
// Every call synchronizes `stream` at least once (it needs sizes and checks back on the host), so
// these serve a communication thread, not a compute stream that must never wait.

// True for the codecs above (none, fp16, bf16, qsgd).
bool hasDeviceCodec(CodecId id);

// Encodes x_dev[0..n) into out_dev (capacity >= makeCodec(id)->maxEncodedBytes(n, rate)) and
// returns the payload size: the bytes makeCodec(id)->encode(host copy of x, n, rate, roundingKey)
// writes. Throws cdl::Error as the CPU codec does (invalid rate, capacity, NaN or infinity for a
// lossy codec, fp16 overflow) and for a codec without a device form. out_dev is complete when it
// returns. residual_dev (optional, not aliasing x_dev) receives x - decode(payload), as the CPU's
// Codec::encodeChunk gives it: qsgd from its symbols, the others through a decode.
size_t encode(CodecId id, const float* x_dev, int64_t n, const LayerRate& rate,
              uint64_t roundingKey, uint8_t* out_dev, size_t capacity, cudaStream_t stream,
              float* residual_dev = nullptr);

// Decodes the payload in_dev[0..len), of whichever codec its header names, into out_dev[0..n):
// overwrites, or adds when accumulate is set, with the CPU decoder's checks (header, hash, the
// codec's fields, the body); throws cdl::Error before it writes to out_dev and never touches
// memory outside in_dev[0..len) and out_dev[0..n). out_dev is complete in `stream` order.
void decode(const uint8_t* in_dev, size_t len, float* out_dev, int64_t n, bool accumulate,
            cudaStream_t stream);

// Note [Codec batches] for either memory: a host batch goes to codec.encodeBatch; a device batch
// runs on place.device's `place.stream`, each chunk through the device codec of codec.id() when
// there is one, else (top-k) staged through host memory to the host codec. The bytes and the
// residuals are the host batch's. A failure names the chunk.
void encodeBatch(const Codec& codec, EncodeChunk* chunks, size_t count, const LayerRate& rate,
                 const BufferPlace& place);
void decodeBatch(const Codec& codec, const DecodeChunk* chunks, size_t count,
                 const BufferPlace& place);

}  // namespace cdl::comm::cuda
