#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

// The GPU twins of kernels/bitpack.h: the same bytes as packBits / unpackBits for the same
// symbols, at any alignment of either buffer. Pointers ending in _dev are device memory;
// arguments are checked on the host and throw cdl::Error.
namespace cdl::kernels::cuda {

// Enqueues on `stream` the packing of sym_dev[0..n) into out_dev[0..packedBytes(n, bits)), LSB
// first, the unused bits of the last byte zero. Symbols must be < 2^bits (their higher bits are
// dropped).
void packBits(const uint8_t* sym_dev, int64_t n, int bits, uint8_t* out_dev, cudaStream_t stream);

// Enqueues the inverse: reads exactly packedBytes(n, bits) bytes of in_dev into sym_dev[0..n).
// When firstBad_dev is not null, *firstBad_dev (one device int64, set to -1 here first) receives
// the smallest index whose symbol is >= limit, or stays -1.
void unpackBits(const uint8_t* in_dev, int64_t n, int bits, uint8_t* sym_dev, int limit,
                int64_t* firstBad_dev, cudaStream_t stream);

}  // namespace cdl::kernels::cuda
