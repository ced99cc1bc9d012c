#include "comm/codec/cuda/device_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/codec/spec.h"
#include "comm/codec/wire.h"
#include "kernels/base/bytes.h"
#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/rng.h"
#include "tests/kernels/cuda/device_buffer.h"
#include "tests/support/error_of.h"
#include "tests/support/gradient_like.h"

namespace cdl::comm {
namespace {

using test::DeviceBuffer;

// Gradient-like data whose first 40 values are zeros: zero buckets and exact zeros, which the
// quantizer and the casts treat specially.
std::vector<float> gradientLike(int64_t n, uint64_t seed) {
  std::vector<float> x = test::gradientLike(n, seed);
  for (int64_t i = 0; i < n && i < 40; ++i) x[static_cast<size_t>(i)] = 0.0f;
  return x;
}

Bytes gpuEncode(const CodecSpec& s, const std::vector<float>& x, uint64_t key, size_t offset = 0) {
  const int64_t n = static_cast<int64_t>(x.size());
  const size_t capacity = makeCodec(s.codec)->maxEncodedBytes(n, s.rate);
  DeviceBuffer<float> in(x);
  DeviceBuffer<uint8_t> out(capacity, offset);
  const size_t len = cuda::encode(s.codec, in.get(), n, s.rate, key, out.get(), capacity, nullptr);
  return out.download(len);
}

// Decodes on the GPU into a copy of `start` (so accumulation is exercised).
std::vector<float> gpuDecode(const Bytes& p, const std::vector<float>& start, bool accumulate,
                             size_t offset = 0) {
  DeviceBuffer<uint8_t> in(p, offset);
  DeviceBuffer<float> out(start);
  cuda::decode(in.get(), p.size(), out.get(), static_cast<int64_t>(start.size()), accumulate,
               nullptr);
  return out.download(start.size());
}

std::string gpuDecodeError(const Bytes& p, int64_t n) {
  return test::errorOf([&] { gpuDecode(p, std::vector<float>(static_cast<size_t>(n)), false); });
}

// Bit for bit, except that fp16 may differ in the sign of a zero: the CPU's scalar tail turns a
// decoded -0 into +0 where its F16C body keeps it, and the GPU keeps it everywhere.
void expectSameFloats(const std::vector<float>& gpu, const std::vector<float>& cpu, CodecId id,
                      const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (size_t i = 0; i < gpu.size(); ++i) {
    if (id == CodecId::kFp16 && gpu[i] == 0.0f && cpu[i] == 0.0f) continue;
    ASSERT_EQ(std::memcmp(&gpu[i], &cpu[i], 4), 0)
        << what << " at " << i << ": gpu " << gpu[i] << " cpu " << cpu[i];
  }
}

const char* const kSpecs[] = {
    "none",
    "fp16",
    "bf16",
    "qsgd:bits=1,bucket=1024,rounding=nearest,entropy=none",
    "qsgd:bits=1,bucket=1024,rounding=stochastic,entropy=rans",
    "qsgd:bits=2,bucket=512,rounding=nearest,entropy=rans",
    "qsgd:bits=2,bucket=1024,rounding=stochastic,entropy=none",
    "qsgd:bits=3,bucket=7,rounding=stochastic,entropy=rans",
    "qsgd:bits=4,bucket=1024,rounding=nearest,entropy=none",
    "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans",
    "qsgd:bits=4,bucket=1,rounding=nearest,entropy=rans",
    "qsgd:bits=6,bucket=4096,rounding=stochastic,entropy=rans",
    "qsgd:bits=8,bucket=1024,rounding=nearest,entropy=rans",
    "qsgd:bits=8,bucket=256,rounding=stochastic,entropy=none",
};

class DeviceCodecTest : public test::CudaTest {};

TEST_F(DeviceCodecTest, PayloadsAreByteIdenticalToTheCpuCodecsAndDecodeAsTheCpuDecodes) {
  const uint64_t key = kernels::roundingKey(7, 3, 1);
  for (const char* text : kSpecs) {
    const CodecSpec s = parseCodecSpec(text);
    const auto cpu = makeCodec(s.codec);
    for (int64_t n : {0, 1, 31, 33, 1000, 4097, 300001}) {
      const std::vector<float> x = gradientLike(n, static_cast<uint64_t>(n) + 5);
      const std::string what = std::string(text) + " n " + std::to_string(n);
      const Bytes want = cpu->encode(x.data(), n, s.rate, key);
      ASSERT_EQ(gpuEncode(s, x, key), want) << what;
      const std::vector<float> start = gradientLike(n, 99);
      for (bool accumulate : {false, true}) {
        std::vector<float> expect = start;
        cpu->decode(want.data(), want.size(), expect.data(), n, accumulate);
        expectSameFloats(gpuDecode(want, start, accumulate), expect, s.codec,
                         what + (accumulate ? " accumulate" : " overwrite"));
      }
    }
  }
}

TEST_F(DeviceCodecTest, LargeQsgdRansPayloadsMatchTheCpu) {
  const CodecSpec s = parseCodecSpec("qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans");
  const int64_t n = (int64_t{1} << 22) + 17;
  const std::vector<float> x = gradientLike(n, 3);
  const Bytes want = makeCodec(s.codec)->encode(x.data(), n, s.rate, 11);
  ASSERT_EQ(gpuEncode(s, x, 11), want);
  std::vector<float> expect(x.size());
  makeCodec(s.codec)->decode(want, expect.data(), n);
  expectSameFloats(gpuDecode(want, std::vector<float>(x.size()), false), expect, s.codec, "4M");
}

TEST_F(DeviceCodecTest, MisalignedPayloadBuffersGiveTheSameBytes) {
  const std::vector<float> x = gradientLike(5003, 8);
  for (const char* text :
       {"fp16", "bf16", "none", "qsgd:bits=4,entropy=rans", "qsgd:bits=3,entropy=none"}) {
    const CodecSpec s = parseCodecSpec(text);
    const Bytes want = makeCodec(s.codec)->encode(x.data(), 5003, s.rate, 2);
    std::vector<float> expect(x.size());
    makeCodec(s.codec)->decode(want, expect.data(), 5003);
    for (size_t offset : {1, 2, 3}) {
      ASSERT_EQ(gpuEncode(s, x, 2, offset), want) << text << " offset " << offset;
      expectSameFloats(gpuDecode(want, std::vector<float>(x.size()), false, offset), expect,
                       s.codec, std::string(text) + " offset " + std::to_string(offset));
    }
  }
}

TEST_F(DeviceCodecTest, NonFiniteAndOverflowingInputsThrowNamingTheElement) {
  std::vector<float> x = gradientLike(3000, 4);
  x[1234] = std::numeric_limits<float>::quiet_NaN();
  for (const char* text : {"fp16", "bf16", "qsgd:bits=4"}) {
    EXPECT_THAT(test::errorOf([&] { gpuEncode(parseCodecSpec(text), x, 0); }),
                ::testing::HasSubstr("element 1234"))
        << text;
  }
  x[1234] = 1.0f;
  x[2000] = 70000.0f;
  x[2500] = -80000.0f;
  EXPECT_THAT(test::errorOf([&] { gpuEncode(parseCodecSpec("fp16"), x, 0); }),
              ::testing::HasSubstr("element 2000 = 70000 overflows fp16"));
  EXPECT_NO_THROW(gpuEncode(parseCodecSpec("bf16"), x, 0));
}

TEST_F(DeviceCodecTest, DamagedPayloadsAreRejectedBeforeTheOutputIsTouched) {
  const std::vector<float> x = gradientLike(4000, 6);
  const Bytes good = makeCodec(CodecId::kQsgd)->encode(x.data(), 4000, LayerRate{}, 1);
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    Bytes bad = good;
    const size_t bit = rng() % (8 * bad.size());
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    const std::vector<float> start(4000, 42.0f);
    DeviceBuffer<uint8_t> in(bad);
    DeviceBuffer<float> out(start);
    const std::string err =
        test::errorOf([&] { cuda::decode(in.get(), bad.size(), out.get(), 4000, false, nullptr); });
    ASSERT_NE(err, test::kNoError) << "bit " << bit;
    ASSERT_EQ(out.download(start.size()), start) << "bit " << bit;
  }
  EXPECT_THAT(gpuDecodeError(Bytes(good.begin(), good.end() - 1), 4000),
              ::testing::HasSubstr("truncated"));
  EXPECT_THAT(gpuDecodeError(good, 3999), ::testing::HasSubstr("holds 4000 elements"));
  EXPECT_THAT(gpuDecodeError(Bytes(10, 0), 10), ::testing::HasSubstr("shorter"));
}

// A payload whose hash is right but whose body is not (a forged or buggy sender): the codec's
// own checks still catch it, as the CPU's do.
TEST_F(DeviceCodecTest, ForgedBodiesWithValidHashesAreRejectedByTheBodyChecks) {
  const int64_t n = 16;
  PayloadHeader h;
  h.codec = CodecId::kQsgd;
  h.numel = n;
  h.bits = 2;
  h.bucket = 16;
  h.bodyBytes = 4 + kernels::packedBytes(n, 2);
  Bytes p(kHeaderBytes + h.bodyBytes, 0);
  storeLE<float>(&p[kHeaderBytes], 1.0f);
  p[kHeaderBytes + 4 + 2] = 0x0c;  // symbol 3 (2 bits hold 0..3, qsgd2 has levels 0..2) at 9
  writeHeader(h, p.data());
  EXPECT_THAT(gpuDecodeError(p, n), ::testing::HasSubstr("symbol 3 at index 9"));
  storeLE<float>(&p[kHeaderBytes], -1.0f);
  writeHeader(h, p.data());
  EXPECT_THAT(gpuDecodeError(p, n), ::testing::HasSubstr("scale of bucket 0"));
}

TEST_F(DeviceCodecTest, TopkHasNoDeviceFormAndSaysSo) {
  EXPECT_FALSE(cuda::hasDeviceCodec(CodecId::kTopk));
  for (CodecId id : {CodecId::kNone, CodecId::kFp16, CodecId::kBf16, CodecId::kQsgd}) {
    EXPECT_TRUE(cuda::hasDeviceCodec(id));
  }
  const std::vector<float> x = gradientLike(1000, 1);
  EXPECT_THAT(test::errorOf([&] { gpuEncode(parseCodecSpec("topk"), x, 0); }),
              ::testing::HasSubstr("no device form"));
  const Bytes p = makeCodec(CodecId::kTopk)->encode(x.data(), 1000, LayerRate{});
  EXPECT_THAT(gpuDecodeError(p, 1000), ::testing::HasSubstr("no device decoder"));
}

}  // namespace
}  // namespace cdl::comm
