#include "comm/codec/wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/codec/spec.h"
#include "kernels/base/error.h"
#include "tests/support/error_of.h"

namespace cdl::comm {
namespace {

std::vector<uint8_t> samplePayload() {
  std::vector<float> x(100);
  for (int i = 0; i < 100; ++i) x[i] = 0.01f * float(i - 50);
  return makeCodec("qsgd")->encode(x.data(), 100, LayerRate{});
}

std::string headerError(const std::vector<uint8_t>& p) {
  return test::errorOf([&] { readHeader(p.data(), p.size()); });
}

// Rewrites the hash after a deliberate change, as an attacker or a buggy peer could.
void reseal(std::vector<uint8_t>& p) {
  PayloadHeader h;
  h.codec = static_cast<CodecId>(p[5]);
  h.dtype = p[6];
  std::memcpy(&h.numel, &p[8], 8);
  h.bits = p[16];
  h.rounding = p[17];
  h.entropy = p[18];
  std::memcpy(&h.bucket, &p[20], 4);
  std::memcpy(&h.arg, &p[24], 8);
  h.bodyBytes = p.size() - kHeaderBytes;
  writeHeader(h, p.data());
}

TEST(Wire, HeaderLayoutIsLittleEndianWithMagicFirst) {
  const auto p = samplePayload();
  ASSERT_GE(p.size(), kHeaderBytes);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(p.data()), 4), "CDLP");
  EXPECT_EQ(p[4], kWireVersion);
  EXPECT_EQ(p[5], static_cast<uint8_t>(CodecId::kQsgd));
  uint64_t numel, body;
  std::memcpy(&numel, &p[8], 8);
  std::memcpy(&body, &p[32], 8);
  EXPECT_EQ(numel, 100u);
  EXPECT_EQ(body, p.size() - kHeaderBytes);
  const PayloadHeader h = readHeader(p.data(), p.size());
  EXPECT_EQ(h.bits, 4);
  EXPECT_EQ(h.bucket, 1024u);
}

TEST(Wire, ReadHeaderNamesWhatIsWrong) {
  auto p = samplePayload();
  auto bad = p;
  bad[0] = 'X';
  EXPECT_NE(headerError(bad).find("bad magic"), std::string::npos);
  bad = p;
  bad[4] = 99;
  EXPECT_NE(headerError(bad).find("format version 99"), std::string::npos);
  bad = p;
  bad[5] = 77;
  EXPECT_NE(headerError(bad).find("unknown codec id 77"), std::string::npos);
  bad = p;
  bad.push_back(0);
  EXPECT_NE(headerError(bad).find("truncated or padded"), std::string::npos);
  bad = p;
  bad.resize(20);
  EXPECT_NE(headerError(bad).find("shorter than the 48-byte header"), std::string::npos);
  bad = p;
  bad.back() ^= 1;
  EXPECT_NE(headerError(bad).find("xxhash64 mismatch"), std::string::npos);
  bad = p;
  bad[7] = 1;  // checked before the hash
  EXPECT_NE(headerError(bad).find("reserved header bytes"), std::string::npos);
}

TEST(Wire, ResealedCorruptBodiesGiveErrorsNotCrashes) {
  std::mt19937 rng(5);
  std::vector<float> x(5000), y(5000);
  for (auto& v : x) v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
  for (const char* spec : {"qsgd:entropy=rans", "qsgd:entropy=none,bits=3", "topk:density=0.05",
                           "topk:density=0.05,entropy=none", "fp16"}) {
    const CodecSpec s = parseCodecSpec(spec);
    auto codec = makeCodec(s.codec);
    const Bytes p = codec->encode(x.data(), 5000, s.rate);
    for (int trial = 0; trial < 300; ++trial) {
      Bytes q = p;
      const int flips = 1 + trial % 4;
      for (int f = 0; f < flips; ++f) {
        const size_t at = kHeaderBytes + rng() % (q.size() - kHeaderBytes);
        q[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
      }
      if (trial % 7 == 0) q.resize(kHeaderBytes + rng() % (q.size() - kHeaderBytes));
      reseal(q);
      try {
        codec->decode(q, y.data(), 5000);
      } catch (const Error&) {
      }
    }
  }
}

}  // namespace
}  // namespace cdl::comm
