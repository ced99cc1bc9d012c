#pragma once

#include <cstddef>
#include <cstdint>

namespace cdl::kernels {

// Bytes that n symbols of `bits` bits (1..8) occupy when packed: ceil(n * bits / 8).
size_t packedBytes(int64_t n, int bits);

// Packs the low `bits` bits of sym[0..n) LSB-first into out[0..packedBytes(n, bits)); the unused
// high bits of the last byte are zero. Symbols must be < 2^bits.
void packBits(const uint8_t* sym, int64_t n, int bits, uint8_t* out);

// Inverse of packBits: reads exactly packedBytes(n, bits) bytes.
void unpackBits(const uint8_t* in, int64_t n, int bits, uint8_t* sym);

// The argument checks of packBits and unpackBits (and of their GPU twins): bits in 1..8, n >= 0,
// no null buffer when n > 0; throws cdl::Error naming `what`.
void checkBitpackArgs(const char* what, const void* src, int64_t n, int bits, const void* dst);

}  // namespace cdl::kernels
