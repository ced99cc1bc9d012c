#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/rans.h"

// The GPU twin of kernels/rans.h: the same stream (Note [Interleaved rANS stream]), byte for
// byte, for the same symbols and options, so that either side decodes what the other encodes.
// Pointers ending in _dev are device memory; scratch comes from the stream-ordered allocator
// (Note [Stream-ordered scratch]).
namespace cdl::kernels::cuda {

// Encodes sym_dev[0..n) into out_dev (capacity bytes, at least ransMaxEncodedBytes(n, opt), else
// it throws) and returns the number of bytes written: the bytes kernels::ransEncode writes, mode
// choice included. The histogram, the block coding and the assembly of the stream run on the
// device; the 256 counts come back to the host, which normalizes the frequencies with the CPU's
// own code and judges "rans only when smaller" as the CPU does. Synchronizes `stream` (three
// times: counts, coded size, end); out_dev is complete when it returns.
size_t ransEncode(const uint8_t* sym_dev, int64_t n, uint8_t* out_dev, size_t capacity,
                  const RansOptions& opt, cudaStream_t stream);

// Decodes exactly n symbols from in_dev[0..len) into sym_dev, every one < maxAlphabet (1..256),
// with the checks of kernels::ransDecode: header fields, frequency and block tables, every
// block's words consumed exactly, final states 2^15, symbols in range. Throws cdl::Error naming
// what is wrong (the block, for a corrupt block); never reads or writes outside in_dev[0..len)
// and sym_dev[0..n). The header and tables are checked on the host (a small copy); the blocks
// report to a status word that is read back, so it synchronizes `stream` before returning.
void ransDecode(const uint8_t* in_dev, size_t len, int64_t n, uint8_t* sym_dev, int maxAlphabet,
                cudaStream_t stream);

}  // namespace cdl::kernels::cuda
