#include "kernels/cuda/rans.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/base/bytes.h"
#include "kernels/base/error.h"
#include "kernels/rans.h"
#include "tests/kernels/cuda/device_buffer.h"
#include "tests/support/error_of.h"

namespace cdl::kernels {
namespace {

using test::DeviceBuffer;

enum class Dist { kConstant, kTwoSkewed, kUniform10, kGeometric, kLaplace15, kWide256, kBytes };
const Dist kDists[] = {Dist::kConstant,  Dist::kTwoSkewed, Dist::kUniform10, Dist::kGeometric,
                       Dist::kLaplace15, Dist::kWide256,   Dist::kBytes};

// Symbol streams like the codecs' (quantized gradients, tails, bytes) and the coder's corner
// cases (one value, two very unequal values, incompressible bytes that fall back to packing).
Bytes makeSymbols(Dist d, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::geometric_distribution<int> geo(0.4);
  std::normal_distribution<double> grad(7.0, 1.5), wide(128.0, 40.0);
  Bytes s(static_cast<size_t>(n));
  for (auto& v : s) {
    switch (d) {
      case Dist::kConstant:
        v = 9;
        break;
      case Dist::kTwoSkewed:
        v = rng() % 1000 == 0 ? 200 : 3;
        break;
      case Dist::kUniform10:
        v = static_cast<uint8_t>(rng() % 10);
        break;
      case Dist::kGeometric:
        v = static_cast<uint8_t>(std::min(geo(rng), 255));
        break;
      case Dist::kLaplace15:
        v = static_cast<uint8_t>(std::clamp(std::lround(grad(rng)), 0l, 14l));
        break;
      case Dist::kWide256:
        v = static_cast<uint8_t>(std::clamp(std::lround(wide(rng)), 0l, 255l));
        break;
      case Dist::kBytes:
        v = static_cast<uint8_t>(rng());
        break;
    }
  }
  return s;
}

Bytes cpuEncode(const Bytes& sym, const RansOptions& opt) {
  Bytes out(ransMaxEncodedBytes(static_cast<int64_t>(sym.size()), opt));
  out.resize(ransEncode(sym.data(), static_cast<int64_t>(sym.size()), out.data(), out.size(), opt));
  return out;
}

// The GPU coder's stream, through buffers `offset` bytes past an aligned address.
Bytes gpuEncode(const Bytes& sym, const RansOptions& opt, size_t offset = 0) {
  const int64_t n = static_cast<int64_t>(sym.size());
  DeviceBuffer<uint8_t> in(sym, offset);
  const size_t capacity = ransMaxEncodedBytes(n, opt);
  DeviceBuffer<uint8_t> out(capacity, offset);
  const size_t len = cuda::ransEncode(in.get(), n, out.get(), capacity, opt, nullptr);
  return out.download(len);
}

Bytes gpuDecode(const Bytes& stream, int64_t n, int maxAlphabet = 256, size_t offset = 0) {
  DeviceBuffer<uint8_t> in(stream, offset);
  DeviceBuffer<uint8_t> sym(static_cast<size_t>(n), offset);
  cuda::ransDecode(in.get(), stream.size(), n, sym.get(), maxAlphabet, nullptr);
  return sym.download(static_cast<size_t>(n));
}

std::string gpuDecodeError(const Bytes& stream, int64_t n, int maxAlphabet = 256) {
  return test::errorOf([&] { gpuDecode(stream, n, maxAlphabet); });
}

bool cpuDecodeThrows(const Bytes& stream, int64_t n, Bytes* sym) {
  sym->assign(static_cast<size_t>(n), 0);
  return test::errorOf([&] { ransDecode(stream.data(), stream.size(), n, sym->data()); }) !=
         test::kNoError;
}

class RansCudaTest : public test::CudaTest {};

// The sizes around a lane step (32) and around blocks of 2^8 and 2^10 symbols.
const int64_t kSizes[] = {0,   1,   2,    31,   32,   33,           255,
                          256, 257, 1023, 1024, 1025, 3 * 1024 + 5, 100003};

TEST_F(RansCudaTest, StreamsAreByteIdenticalToTheCpuCoderAndDecodeEitherWay) {
  uint64_t seed = 1;
  for (const RansOptions opt : {RansOptions{12, 8}, RansOptions{12, 10}, RansOptions{15, 18},
                                RansOptions{1, 8}, RansOptions{6, 12}}) {
    for (Dist d : kDists) {
      for (int64_t n : kSizes) {
        const Bytes sym = makeSymbols(d, n, ++seed);
        const Bytes cpu = cpuEncode(sym, opt);
        const Bytes gpu = gpuEncode(sym, opt);
        const std::string what = "dist " + std::to_string(int(d)) + " n " + std::to_string(n) +
                                 " probBits " + std::to_string(opt.probBits) + " logBlock " +
                                 std::to_string(opt.logBlock);
        ASSERT_EQ(gpu, cpu) << what;
        ASSERT_EQ(gpuDecode(cpu, n), sym) << what;
        Bytes back(static_cast<size_t>(n));
        ransDecode(gpu.data(), gpu.size(), n, back.data());
        ASSERT_EQ(back, sym) << what;
      }
    }
  }
}

TEST_F(RansCudaTest, LargeInputsMatchTheCpuAtTheDefaultAndSmallBlocks) {
  const int64_t n = (int64_t{1} << 22) + 3;
  for (Dist d : {Dist::kLaplace15, Dist::kGeometric, Dist::kWide256}) {
    const Bytes sym = makeSymbols(d, n, 77);
    for (const RansOptions opt : {RansOptions{}, RansOptions{12, 10}}) {
      const Bytes cpu = cpuEncode(sym, opt);
      ASSERT_EQ(cpu[0], 1) << "rans mode expected";
      ASSERT_EQ(gpuEncode(sym, opt), cpu) << "logBlock " << opt.logBlock;
      ASSERT_EQ(gpuDecode(cpu, n), sym) << "logBlock " << opt.logBlock;
    }
  }
}

TEST_F(RansCudaTest, MisalignedBuffersGiveTheSameBytes) {
  const Bytes sym = makeSymbols(Dist::kLaplace15, 5000, 5);
  const RansOptions opt{12, 9};
  const Bytes cpu = cpuEncode(sym, opt);
  for (size_t offset : {1, 2, 3, 5}) {
    EXPECT_EQ(gpuEncode(sym, opt, offset), cpu) << offset;
    EXPECT_EQ(gpuDecode(cpu, 5000, 256, offset), sym) << offset;
  }
}

TEST_F(RansCudaTest, EveryTruncationAndExtensionThrows) {
  for (Dist d : {Dist::kLaplace15, Dist::kBytes, Dist::kConstant}) {
    const Bytes sym = makeSymbols(d, 700, 9);
    const Bytes good = cpuEncode(sym, {12, 8});
    for (size_t len = 0; len < good.size(); ++len) {
      ASSERT_NE(gpuDecodeError(Bytes(good.begin(), good.begin() + len), 700), test::kNoError)
          << "dist " << int(d) << " length " << len;
    }
    Bytes longer = good;
    longer.push_back(0);
    EXPECT_NE(gpuDecodeError(longer, 700), test::kNoError);
  }
}

// The block table starts after the 4-byte header and the frequencies.
size_t blockTableAt(const Bytes& s) { return 4 + 2 * (size_t{s[3]} + 1); }

TEST_F(RansCudaTest, CorruptBlocksThrowNamingTheBlock) {
  const int64_t n = 5000;
  const Bytes good = cpuEncode(makeSymbols(Dist::kLaplace15, n, 3), {12, 10});  // 5 blocks
  ASSERT_EQ(good[0], 1);
  const size_t table = blockTableAt(good);
  size_t blockAt[5];
  blockAt[0] = table + 4 * 5;
  for (int b = 1; b < 5; ++b)
    blockAt[b] = blockAt[b - 1] + loadLE<uint32_t>(&good[table + 4 * (b - 1)]);
  Bytes bad = good;
  storeLE<uint32_t>(&bad[blockAt[2] + 4 * 3], 0x7fff);
  EXPECT_THAT(gpuDecodeError(bad, n), ::testing::HasSubstr("rans block 2: an initial state"));
  bad = good;
  bad[blockAt[3] + 4 * 7] ^= 1;
  EXPECT_THAT(gpuDecodeError(bad, n), ::testing::HasSubstr("rans block 3"));
  bad = good;
  bad.insert(bad.end(), {0x12, 0x34});
  storeLE<uint32_t>(&bad[table + 16], loadLE<uint32_t>(&bad[table + 16]) + 2);
  EXPECT_THAT(gpuDecodeError(bad, n), ::testing::HasSubstr("rans block 4: words left over"));
  bad = good;
  storeLE<uint32_t>(&bad[table + 8], 126);
  EXPECT_THAT(gpuDecodeError(bad, n), ::testing::HasSubstr("rans block 2: size 126"));
  bad = good;
  bad[4] ^= 4;
  EXPECT_THAT(gpuDecodeError(bad, n), ::testing::HasSubstr("frequencies sum to"));
  EXPECT_NE(gpuDecodeError(good, n - 1), test::kNoError);
  EXPECT_NE(gpuDecodeError(good, n + 1), test::kNoError);
}

TEST_F(RansCudaTest, BitFlipsAndRandomDamageAreRejectedExactlyWhenTheCpuRejectsThem) {
  const int64_t n = 2100;
  const Bytes good = cpuEncode(makeSymbols(Dist::kLaplace15, n, 13), {12, 10});  // 3 blocks
  ASSERT_EQ(good[0], 1);
  std::mt19937_64 rng(21);
  Bytes expect;
  for (size_t trial = 0; trial < 8 * good.size() + 400; ++trial) {
    Bytes bad = good;
    if (trial < 8 * good.size()) {
      bad[trial / 8] ^= static_cast<uint8_t>(1u << (trial % 8));
    } else {
      for (int k = 0; k < 3; ++k) bad[rng() % bad.size()] = static_cast<uint8_t>(rng());
    }
    const bool cpuThrows = cpuDecodeThrows(bad, n, &expect);
    Bytes got;
    const std::string err = test::errorOf([&] { got = gpuDecode(bad, n); });
    ASSERT_EQ(err != test::kNoError, cpuThrows) << "trial " << trial << ": " << err;
    if (!cpuThrows) {
      ASSERT_EQ(got, expect) << "trial " << trial;
    }
  }
}

TEST_F(RansCudaTest, SymbolsAtOrAboveMaxAlphabetAreRejected) {
  const Bytes sym = makeSymbols(Dist::kLaplace15, 20000, 4);
  const int maxSym = *std::max_element(sym.begin(), sym.end());
  EXPECT_EQ(gpuDecode(cpuEncode(sym, {}), 20000, maxSym + 1), sym);
  EXPECT_THAT(gpuDecodeError(cpuEncode(sym, {}), 20000, maxSym), ::testing::HasSubstr("alphabet"));
  EXPECT_THAT(gpuDecodeError(cpuEncode(Bytes(50, 200), {}), 50, 200),
              ::testing::HasSubstr("symbol 200"));
  const Bytes packed = {0, 2, 0, 0, 0x1b};  // symbols 3, 2, 1, 0
  EXPECT_EQ(gpuDecode(packed, 4, 4), (Bytes{3, 2, 1, 0}));
  EXPECT_THAT(gpuDecodeError(packed, 4, 3), ::testing::HasSubstr("symbol 3 at index 0"));
  EXPECT_THAT(gpuDecodeError(Bytes{0, 2, 0, 0, 0xcb}, 3, 4), ::testing::HasSubstr("padding"));
}

TEST_F(RansCudaTest, InvalidArgumentsThrowBeforeLaunching) {
  DeviceBuffer<uint8_t> buf(64);
  EXPECT_THROW(cuda::ransEncode(buf.get(), 10, buf.get(), 13, {}, nullptr), Error);
  EXPECT_THROW(cuda::ransEncode(buf.get(), 10, buf.get(), 64, {16, 10}, nullptr), Error);
  EXPECT_THROW(cuda::ransEncode(buf.get(), 10, buf.get(), 64, {12, 7}, nullptr), Error);
  EXPECT_THROW(cuda::ransDecode(buf.get(), 3, 1, buf.get(), 256, nullptr), Error);
  EXPECT_THROW(cuda::ransDecode(buf.get(), 8, 1, buf.get(), 0, nullptr), Error);
  EXPECT_THROW(cuda::ransDecode(buf.get(), 8, -1, buf.get(), 256, nullptr), Error);
}

}  // namespace
}  // namespace cdl::kernels
