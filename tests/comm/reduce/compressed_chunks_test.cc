#include "comm/reduce/compressed_chunks.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "comm/codec/spec.h"

namespace cdl::comm {
namespace {

// Chunks cover the buffer in order, one per rank, and cut it only on the codec's alignment, so
// no qsgd bucket is split between two ranks.
TEST(CompressedChunks, ChunksCoverTheBufferOnAlignedBoundaries) {
  for (int64_t n : {0, 1, 1023, 1024, 1025, 5000, 70001}) {
    for (int64_t align : {1, 512, 1024}) {
      for (int size = 1; size <= 5; ++size) {
        std::vector<int64_t> begin;
        chunkBegins(n, align, 0, (n + align - 1) / align, size, &begin);
        ASSERT_EQ(begin.size(), static_cast<size_t>(size) + 1);
        EXPECT_EQ(begin.front(), 0);
        EXPECT_EQ(begin.back(), n);
        for (int r = 0; r < size; ++r) {
          EXPECT_LE(begin[r], begin[r + 1]);
          if (begin[r + 1] < n) {
            EXPECT_EQ(begin[r + 1] % align, 0) << n << " " << size;
          }
        }
      }
    }
  }
}

TEST(CompressedChunks, EveryEncodingOfACollectiveHasItsOwnRoundingStream) {
  std::set<uint64_t> keys;
  for (ChunkStage s : {ChunkStage::kGather, ChunkStage::kScatter, ChunkStage::kReduce}) {
    for (uint64_t rank = 0; rank < 4; ++rank) {
      for (uint64_t chunk = 0; chunk < 8; ++chunk) keys.insert(chunkKey(42, s, rank, chunk));
    }
  }
  EXPECT_EQ(keys.size(), 3u * 4 * 8);
  EXPECT_NE(chunkKey(42, ChunkStage::kScatter, 1, 2), chunkKey(43, ChunkStage::kScatter, 1, 2));
}

// decodeSum is the sum of the payloads' decodes in order; encodeRange's residual is what the
// payload lost; averageOverRanks multiplies by 1 / size.
TEST(CompressedChunks, ResidualSumAndAverage) {
  const CodecSpec spec = parseCodecSpec("qsgd:bits=3,rounding=nearest");
  const auto codec = makeCodec(spec.codec);
  std::vector<float> a(3000), b(3000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.001f * i - 1.0f, b[i] = 0.5f - 0.0007f * i;
  std::vector<float> residual(a.size());
  Bytes pa, pb;
  encodeRange(*codec, a.data(), 3000, spec.rate, 1, &pa, residual.data());
  encodeRange(*codec, b.data(), 3000, spec.rate, 2, &pb);
  std::vector<float> da(3000), db(3000), sum(3000);
  codec->decode(pa, da.data(), 3000);
  codec->decode(pb, db.data(), 3000);
  const uint8_t* payloads[] = {pa.data(), pb.data()};
  const size_t sizes[] = {pa.size(), pb.size()};
  decodeSum(*codec, payloads, sizes, 2, sum.data(), 3000);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(residual[i], a[i] - da[i]);
    EXPECT_EQ(sum[i], da[i] + db[i]);
  }
  std::vector<float> x = {1.0f, -3.0f, 0.5f};
  averageOverRanks(x.data(), 3, 1);
  EXPECT_EQ(x, (std::vector<float>{1.0f, -3.0f, 0.5f}));
  averageOverRanks(x.data(), 3, 4);
  EXPECT_EQ(x, (std::vector<float>{0.25f, -0.75f, 0.125f}));
  addResidual(x.data(), x.data(), 3);
  EXPECT_EQ(x, (std::vector<float>{0.5f, -1.5f, 0.25f}));
}

}  // namespace
}  // namespace cdl::comm
