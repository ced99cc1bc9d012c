// Note [Codec batches] on device memory: the device codecs chunk by chunk, top-k through host
// staging.
#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "comm/codec/cuda/device_codec.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/scratch.h"

namespace cdl::comm::cuda {
namespace {

cudaStream_t streamOf(const BufferPlace& place) {
  if (place.device >= 0) CDL_CUDA_CHECK(cudaSetDevice(place.device));
  return static_cast<cudaStream_t>(place.stream);
}

// A chunk of a codec without a device form: x to the host, the host codec, payload and residual
// back to the device.
void encodeStaged(const Codec& codec, EncodeChunk& c, const LayerRate& rate, cudaStream_t stream) {
  std::vector<float> x(static_cast<size_t>(c.n)), residual;
  kernels::cuda::copyToHost(x.data(), c.x, x.size() * sizeof(float), stream);
  Bytes out(codec.maxEncodedBytes(c.n, rate));
  EncodeChunk host = c;
  host.x = x.data();
  host.out = out.data();
  host.capacity = out.size();
  if (c.residual != nullptr) {
    residual.resize(x.size());
    host.residual = residual.data();
  }
  codec.encodeChunk(host, rate);
  CDL_CHECK(host.bytes <= c.capacity, codec.name(), ": output capacity ", c.capacity, " < ",
            host.bytes);
  kernels::cuda::copyToDevice(c.out, out.data(), host.bytes, stream);
  if (c.residual != nullptr) {
    kernels::cuda::copyToDevice(c.residual, residual.data(), residual.size() * sizeof(float),
                                stream);
  }
  c.bytes = host.bytes;
}

void decodeStaged(const Codec& codec, const DecodeChunk& c, cudaStream_t stream) {
  Bytes in(c.len);
  kernels::cuda::copyToHost(in.data(), c.in, c.len, stream);
  std::vector<float> out(static_cast<size_t>(c.n));
  if (c.accumulate) kernels::cuda::copyToHost(out.data(), c.out, out.size() * 4, stream);
  codec.decode(in.data(), in.size(), out.data(), c.n, c.accumulate);
  kernels::cuda::copyToDevice(c.out, out.data(), out.size() * sizeof(float), stream);
}

}  // namespace

void encodeBatch(const Codec& codec, EncodeChunk* chunks, size_t count, const LayerRate& rate,
                 const BufferPlace& place) {
  if (place.memory == BufferMemory::kHost) return codec.encodeBatch(chunks, count, rate, place);
  const cudaStream_t stream = streamOf(place);
  const bool device = hasDeviceCodec(codec.id());
  forEachChunk(codec, count, " on cuda:" + std::to_string(place.device), [&](size_t i) {
    EncodeChunk& c = chunks[i];
    if (device) {
      c.bytes =
          encode(codec.id(), c.x, c.n, rate, c.roundingKey, c.out, c.capacity, stream, c.residual);
    } else {
      encodeStaged(codec, c, rate, stream);
    }
  });
}

void decodeBatch(const Codec& codec, const DecodeChunk* chunks, size_t count,
                 const BufferPlace& place) {
  if (place.memory == BufferMemory::kHost) return codec.decodeBatch(chunks, count, place);
  const cudaStream_t stream = streamOf(place);
  const bool device = hasDeviceCodec(codec.id());
  forEachChunk(codec, count, " on cuda:" + std::to_string(place.device), [&](size_t i) {
    const DecodeChunk& c = chunks[i];
    if (device) {
      decode(c.in, c.len, c.out, c.n, c.accumulate, stream);
    } else {
      decodeStaged(codec, c, stream);
    }
  });
}

}  // namespace cdl::comm::cuda
