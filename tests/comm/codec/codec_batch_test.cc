// Note [Codec batches]: a batch encodes and decodes as its chunks one by one, every codec returns
// the residual that a decode of its payload gives, and device memory is refused by name.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/codec/spec.h"
#include "kernels/base/bytes.h"
#include "tests/support/error_of.h"
#include "tests/support/gradient_like.h"

namespace cdl::comm {
namespace {

using test::gradientLike;

const char* const kSpecs[] = {"none",
                              "fp16",
                              "bf16",
                              "qsgd:bits=4,entropy=rans",
                              "qsgd:bits=2,rounding=nearest,entropy=none",
                              "qsgd:bits=8,bucket=64",
                              "topk:density=0.05"};

TEST(CodecBatch, ABatchGivesTheBytesAndResidualsOfItsChunksOneByOne) {
  const std::vector<int64_t> sizes = {0, 1, 1000, 4096, 33333};
  for (const char* text : kSpecs) {
    SCOPED_TRACE(text);
    const CodecSpec spec = parseCodecSpec(text);
    const auto codec = makeCodec(spec.codec);
    std::vector<std::vector<float>> xs, residuals;
    std::vector<Bytes> outs;
    std::vector<EncodeChunk> chunks;
    for (size_t i = 0; i < sizes.size(); ++i) {
      xs.push_back(gradientLike(sizes[i], 100 + i));
      residuals.emplace_back(xs.back().size(), -7.0f);
      outs.emplace_back(codec->maxEncodedBytes(sizes[i], spec.rate));
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      EncodeChunk c;
      c.x = xs[i].data();
      c.n = sizes[i];
      c.roundingKey = 42 + i;
      c.out = outs[i].data();
      c.capacity = outs[i].size();
      c.residual = residuals[i].data();
      chunks.push_back(c);
    }
    codec->encodeBatch(chunks.data(), chunks.size(), spec.rate);
    std::vector<DecodeChunk> back;
    std::vector<std::vector<float>> decoded;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const Bytes one = codec->encode(xs[i].data(), sizes[i], spec.rate, 42 + i);
      ASSERT_EQ(chunks[i].bytes, one.size()) << "chunk " << i;
      EXPECT_TRUE(std::equal(one.begin(), one.end(), outs[i].begin())) << "chunk " << i;
      decoded.emplace_back(xs[i].size(), 0.0f);
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      back.push_back({outs[i].data(), chunks[i].bytes, decoded[i].data(), sizes[i], false});
    }
    codec->decodeBatch(back.data(), back.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (size_t j = 0; j < xs[i].size(); ++j) {
        // The residual is exactly what error feedback computed from a decode of the payload.
        ASSERT_EQ(residuals[i][j], xs[i][j] - decoded[i][j]) << "chunk " << i << " element " << j;
      }
    }
  }
}

TEST(CodecBatch, AFailureNamesItsChunkAndDeviceMemoryIsRefused) {
  const auto codec = makeCodec(CodecId::kQsgd);
  const LayerRate rate;
  std::vector<float> x = {1.0f, 2.0f};
  Bytes out(codec->maxEncodedBytes(2, rate));
  EncodeChunk c;
  c.x = x.data();
  c.n = 2;
  c.out = out.data();
  c.capacity = out.size();
  EncodeChunk chunks[2] = {c, c};
  chunks[1].capacity = 3;
  const std::string small = test::errorOf([&] { codec->encodeBatch(chunks, 2, rate); });
  EXPECT_NE(small.find("chunk 1 of 2"), std::string::npos) << small;
  EXPECT_GT(chunks[0].bytes, 0u);  // the chunks before the failure are complete
  BufferPlace gpu;
  gpu.memory = BufferMemory::kDevice;
  gpu.device = 1;
  const std::string dev = test::errorOf([&] { codec->encodeBatch(chunks, 1, rate, gpu); });
  EXPECT_NE(dev.find("device cuda:1"), std::string::npos) << dev;
  EXPECT_NE(dev.find("qsgd"), std::string::npos) << dev;
  const DecodeChunk d{out.data(), 5, x.data(), 2, false};
  const std::string bad = test::errorOf([&] { codec->decodeBatch(&d, 1); });
  EXPECT_NE(bad.find("chunk 0 of 1"), std::string::npos) << bad;
}

}  // namespace
}  // namespace cdl::comm
