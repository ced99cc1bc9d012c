#pragma once

#include <memory>

#include "comm/codec/codec.h"

namespace cdl::comm {

// The concrete codecs; callers use makeCodec().
std::unique_ptr<Codec> makeNoneCodec();
std::unique_ptr<Codec> makeFp16Codec();
std::unique_ptr<Codec> makeBf16Codec();
std::unique_ptr<Codec> makeQsgdCodec();
std::unique_ptr<Codec> makeTopkCodec();

// Checks that x[0..n) is finite for a lossy codec; throws naming the first bad element.
void requireFinite(const char* codec, const float* x, int64_t n, float* maxAbs = nullptr);

}  // namespace cdl::comm
