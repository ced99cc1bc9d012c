#pragma once

#include <memory>

#include "comm/codec/codec.h"
#include "comm/codec/registry.h"

namespace cdl::comm {

// The concrete codecs' entries (Note [Codec registry]); callers use makeCodec().
CodecEntry noneCodecEntry();
CodecEntry fp16CodecEntry();
CodecEntry bf16CodecEntry();
CodecEntry qsgdCodecEntry();
CodecEntry topkCodecEntry();

// qsgd's payload header for n elements at `rate` with a body of bodyBytes; the CPU and GPU coders
// write the same one.
PayloadHeader qsgdHeader(int64_t n, const LayerRate& rate, uint64_t bodyBytes);
// Checks a qsgd payload's header fields and the scales that open its body (in host memory) for n
// elements, as every qsgd decoder must; returns the number of scales.
int64_t checkQsgdPayload(const PayloadHeader& h, const uint8_t* body, int64_t n);

// Checks that x[0..n) is finite for a lossy codec; throws naming the first bad element.
void requireFinite(const char* codec, const float* x, int64_t n, float* maxAbs = nullptr);

}  // namespace cdl::comm
