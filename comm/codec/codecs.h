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

// Checks that x[0..n) is finite for a lossy codec; throws naming the first bad element.
void requireFinite(const char* codec, const float* x, int64_t n, float* maxAbs = nullptr);

}  // namespace cdl::comm
