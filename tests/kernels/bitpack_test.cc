#include "kernels/bitpack.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::kernels {
namespace {

constexpr int64_t kSizes[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 1001, 4099};
constexpr uint8_t kGuard = 0xab;

std::vector<uint8_t> randomSymbols(int64_t n, int bits, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> s(static_cast<size_t>(n));
  for (auto& v : s) v = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
  return s;
}

// Bit j of symbol i sits at bit i * bits + j of the stream, LSB first.
std::vector<uint8_t> referencePack(const std::vector<uint8_t>& sym, int bits) {
  std::vector<uint8_t> out(packedBytes(static_cast<int64_t>(sym.size()), bits), 0);
  for (size_t i = 0; i < sym.size(); ++i) {
    for (int j = 0; j < bits; ++j) {
      const size_t pos = i * bits + j;
      if ((sym[i] >> j) & 1) out[pos / 8] |= static_cast<uint8_t>(1u << (pos % 8));
    }
  }
  return out;
}

TEST(BitpackTest, PackedBytesIsTheCeilingOfTheBitCount) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : kSizes) EXPECT_EQ(packedBytes(n, bits), size_t((n * bits + 7) / 8));
  }
  EXPECT_EQ(packedBytes(int64_t{1} << 60, 7), (size_t{1} << 57) * 7);
  EXPECT_EQ(packedBytes((int64_t{1} << 60) + 3, 3), (size_t{1} << 57) * 3 + 2);
}

TEST(BitpackTest, RoundTripsEveryWidthAndOddSizesWithoutTouchingNeighbours) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : kSizes) {
      const auto sym = randomSymbols(n, bits, bits * 1000 + n);
      const size_t bytes = packedBytes(n, bits);
      std::vector<uint8_t> packed(bytes + 16, kGuard);
      packBits(sym.data(), n, bits, packed.data());
      for (size_t i = bytes; i < packed.size(); ++i) ASSERT_EQ(packed[i], kGuard) << i;
      std::vector<uint8_t> back(static_cast<size_t>(n) + 16, kGuard);
      unpackBits(packed.data(), n, bits, back.data());
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[i], sym[i]) << "bits " << bits << " i " << i;
      for (size_t i = static_cast<size_t>(n); i < back.size(); ++i) ASSERT_EQ(back[i], kGuard);
    }
  }
}

TEST(BitpackTest, LayoutIsLsbFirstBitByBit) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : kSizes) {
      const auto sym = randomSymbols(n, bits, 77 + bits + n);
      std::vector<uint8_t> packed(packedBytes(n, bits));
      packBits(sym.data(), n, bits, packed.data());
      ASSERT_EQ(packed, referencePack(sym, bits)) << "bits " << bits << " n " << n;
    }
  }
}

TEST(BitpackTest, PaddingBitsOfTheLastByteAreZero) {
  for (int bits = 1; bits <= 7; ++bits) {
    for (int64_t n : kSizes) {
      if ((n * bits) % 8 == 0) continue;
      const std::vector<uint8_t> sym(static_cast<size_t>(n),
                                     static_cast<uint8_t>((1u << bits) - 1));
      std::vector<uint8_t> packed(packedBytes(n, bits), 0xff);
      packBits(sym.data(), n, bits, packed.data());
      const int used = static_cast<int>((n * bits) % 8);
      EXPECT_EQ(packed.back(), (1u << used) - 1) << "bits " << bits << " n " << n;
    }
  }
}

TEST(BitpackTest, PacksOnlyTheLowBitsOfEachSymbol) {
  for (int bits = 1; bits <= 8; ++bits) {
    std::vector<uint8_t> sym = randomSymbols(1001, 8, bits);
    std::vector<uint8_t> low(sym);
    for (auto& v : low) v &= static_cast<uint8_t>((1u << bits) - 1);
    std::vector<uint8_t> a(packedBytes(1001, bits)), b(a.size());
    packBits(sym.data(), 1001, bits, a.data());
    packBits(low.data(), 1001, bits, b.data());
    EXPECT_EQ(a, b) << bits;
  }
}

// The packed stream ends right before an inaccessible page: reading one byte too far faults.
TEST(BitpackTest, UnpackReadsNoMoreThanThePackedBytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* mem = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  uint8_t* base = static_cast<uint8_t*>(mem);
  ASSERT_EQ(mprotect(base + 2 * page, page, PROT_NONE), 0);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : kSizes) {
      const size_t bytes = packedBytes(n, bits);
      if (bytes > 2 * page) continue;
      const auto sym = randomSymbols(n, bits, 5 * bits + n);
      uint8_t* in = base + 2 * page - bytes;
      packBits(sym.data(), n, bits, in);
      std::vector<uint8_t> back(static_cast<size_t>(n));
      unpackBits(in, n, bits, back.data());
      ASSERT_EQ(back, sym) << "bits " << bits << " n " << n;
    }
  }
  munmap(mem, 3 * page);
}

TEST(BitpackTest, InvalidArgumentsThrow) {
  std::vector<uint8_t> a(16), b(16);
  EXPECT_THROW(packedBytes(8, 0), Error);
  EXPECT_THROW(packedBytes(8, 9), Error);
  EXPECT_THROW(packedBytes(-1, 4), Error);
  EXPECT_THROW(packBits(a.data(), 8, 9, b.data()), Error);
  EXPECT_THROW(packBits(nullptr, 8, 4, b.data()), Error);
  EXPECT_THROW(unpackBits(a.data(), 8, 0, b.data()), Error);
  EXPECT_THROW(unpackBits(a.data(), -2, 4, b.data()), Error);
  EXPECT_THROW(unpackBits(a.data(), 8, 4, nullptr), Error);
  EXPECT_NO_THROW(packBits(nullptr, 0, 3, nullptr));
  EXPECT_NO_THROW(unpackBits(nullptr, 0, 3, nullptr));
}

}  // namespace
}  // namespace cdl::kernels
