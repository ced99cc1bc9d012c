#pragma once

// The per-codec halves of comm/codec/cuda/device_codec.cc's dispatch.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "comm/codec/codec.h"

namespace cdl::comm::cuda::detail {

// qsgd (comm/codec/codec_qsgd.cc on the device).
// residual_dev (optional): receives x - decode(payload), computed from the symbols.
size_t encodeQsgd(const float* x_dev, int64_t n, const LayerRate& rate, uint64_t roundingKey,
                  uint8_t* out_dev, size_t capacity, float* residual_dev, cudaStream_t stream);
// Decodes the body at body_dev of a payload whose header h (staged on the host at body_host's
// header) has been validated and matches n.
void decodeQsgd(const PayloadHeader& h, const uint8_t* body_dev, const uint8_t* body_host,
                float* out_dev, int64_t n, bool accumulate, cudaStream_t stream);

}  // namespace cdl::comm::cuda::detail
