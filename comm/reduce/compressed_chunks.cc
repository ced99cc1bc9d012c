#include "comm/reduce/compressed_chunks.h"

#include <algorithm>

#include "kernels/rng.h"

namespace cdl::comm {

uint64_t chunkKey(uint64_t key, ChunkStage stage, uint64_t rank, uint64_t chunk) {
  const uint64_t s = static_cast<uint64_t>(stage);
  return kernels::mix64(key ^ kernels::mix64((s << 56) ^ (rank << 28) ^ chunk));
}

void encodeRange(const Codec& codec, const float* x, int64_t n, const LayerRate& rate, uint64_t key,
                 Bytes* p, float* residual) {
  p->resize(codec.maxEncodedBytes(n, rate));
  EncodeChunk c;
  c.x = x;
  c.n = n;
  c.roundingKey = key;
  c.out = p->data();
  c.capacity = p->size();
  c.residual = residual;
  codec.encodeChunk(c, rate);
  p->resize(c.bytes);
}

int64_t chunkAlign(const Codec& codec, const LayerRate& rate) {
  return std::max<int64_t>(1, codec.chunkAlignment(rate));
}

void chunkBegins(int64_t n, int64_t align, int64_t u0, int64_t u1, int size,
                 std::vector<int64_t>* begin) {
  begin->resize(static_cast<size_t>(size) + 1);
  for (int r = 0; r <= size; ++r) (*begin)[r] = std::min(n, (u0 + (u1 - u0) * r / size) * align);
}

void addResidual(float* x, const float* residual, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += residual[i];
}

void decodeSum(const Codec& codec, const uint8_t* const* payloads, const size_t* sizes, int count,
               float* out, int64_t n) {
  for (int r = 0; r < count; ++r) codec.decode(payloads[r], sizes[r], out, n, /*accumulate=*/r > 0);
}

void averageOverRanks(float* x, int64_t n, int size) {
  if (size <= 1) return;
  const float inv = 1.0f / static_cast<float>(size);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace cdl::comm
