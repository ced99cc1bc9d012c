#pragma once

#include <cstdint>
#include <vector>

#include "comm/codec/codec.h"
#include "kernels/base/bytes.h"

namespace cdl::comm {

// Note [Compressed chunks]
// The pieces of Note [Compressed allreduce] that do not move bytes: where a buffer's chunks
// begin, the rounding key of each encoding, one encoding with its residual, the sum of a chunk's
// payloads and the average. compressedAllreduce moves the payloads over a Communicator; the
// Python hook (python/cdl/ddp.py) moves the same payloads over a torch process group and calls
// these same functions, so that both give the same bits.

// Which encoding of a collective a rounding key is for.
enum class ChunkStage : uint64_t { kGather = 0, kScatter = 1, kReduce = 2 };

// The rounding stream of one encoding: distinct per (stage, rank, chunk) within a collective.
uint64_t chunkKey(uint64_t key, ChunkStage stage, uint64_t rank, uint64_t chunk);

// Encodes x[0..n) into *p; with a residual, also residual[0..n) = x - decode(*p), which the codec
// computes without a decode pass where it can (Note [Codec batches]).
void encodeRange(const Codec& codec, const float* x, int64_t n, const LayerRate& rate, uint64_t key,
                 Bytes* p, float* residual = nullptr);

// The codec's chunk alignment at `rate`, at least 1.
int64_t chunkAlign(const Codec& codec, const LayerRate& rate);

// The chunk of each of `size` ranks within the alignment units [u0, u1) of a buffer of n
// elements (align elements a unit): *begin gets size + 1 entries, rank r's chunk being
// [begin[r], begin[r + 1]). The whole buffer is u0 = 0, u1 = ceil(n / align).
void chunkBegins(int64_t n, int64_t align, int64_t u0, int64_t u1, int size,
                 std::vector<int64_t>* begin);

// x[i] += residual[i] for i < n: what error feedback compresses.
void addResidual(float* x, const float* residual, int64_t n);

// Decodes count payloads (payloads[r], sizes[r] bytes) into out[0..n) in order, the first
// overwriting and the others adding: a chunk's sum in rank order.
void decodeSum(const Codec& codec, const uint8_t* const* payloads, const size_t* sizes, int count,
               float* out, int64_t n);

// The average of a sum over `size` ranks: x[i] *= 1 / size (nothing for one rank).
void averageOverRanks(float* x, int64_t n, int size);

}  // namespace cdl::comm
