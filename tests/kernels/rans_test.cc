#include "kernels/rans.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/histogram.h"
#include "kernels/rans_table.h"

namespace cdl::kernels {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kModePacked = 0;
constexpr uint8_t kModeRans = 1;
constexpr uint8_t kModeConstant = 2;

enum class Dist { kConstant, kUniform10, kSkewed, kVerySkewed, kLaplace15, kWide256, kBytes };

const char* distName(Dist d) {
  switch (d) {
    case Dist::kConstant:
      return "Constant";
    case Dist::kUniform10:
      return "Uniform10";
    case Dist::kSkewed:
      return "Skewed";
    case Dist::kVerySkewed:
      return "VerySkewed";
    case Dist::kLaplace15:
      return "Laplace15";
    case Dist::kWide256:
      return "Wide256";
    case Dist::kBytes:
      return "UniformBytes";
  }
  return "?";
}

// Symbol streams shaped like what the codecs feed the coder: constant buckets, uniform digits,
// geometric tails (H = 2 and 0.52 bits), 4-bit quantized gradients (15 levels, ~2.6 bits), a wide
// 256-value bell (~7.4 bits) and incompressible bytes.
Bytes makeSymbols(Dist d, int64_t n, uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  Bytes s(static_cast<size_t>(n));
  std::uniform_int_distribution<int> digit(0, 9), byte(0, 255);
  std::geometric_distribution<int> geo(0.5), steep(0.9);
  std::normal_distribution<double> grad(0.0, 1.5), wide(128.0, 40.0);
  for (auto& v : s) {
    switch (d) {
      case Dist::kConstant:
        v = 9;
        break;
      case Dist::kUniform10:
        v = static_cast<uint8_t>(digit(rng));
        break;
      case Dist::kSkewed:
        v = static_cast<uint8_t>(std::min(geo(rng), 255));
        break;
      case Dist::kVerySkewed:
        v = static_cast<uint8_t>(std::min(steep(rng), 255));
        break;
      case Dist::kLaplace15:
        v = static_cast<uint8_t>(std::clamp<long>(std::lround(grad(rng)), -7, 7) + 7);
        break;
      case Dist::kWide256:
        v = static_cast<uint8_t>(std::clamp<long>(std::lround(wide(rng)), 0, 255));
        break;
      case Dist::kBytes:
        v = static_cast<uint8_t>(byte(rng));
        break;
    }
  }
  return s;
}

Bytes encode(const Bytes& sym, const RansOptions& opt = {}) {
  const int64_t n = static_cast<int64_t>(sym.size());
  Bytes out(ransMaxEncodedBytes(n, opt));
  out.resize(ransEncode(sym.data(), n, out.data(), out.size(), opt));
  return out;
}

Bytes decode(const Bytes& in, int64_t n, int maxAlphabet = 256) {
  Bytes sym(static_cast<size_t>(n));
  ransDecode(in.data(), in.size(), n, sym.data(), maxAlphabet);
  return sym;
}

bool decodeThrows(const Bytes& in, int64_t n) {
  try {
    decode(in, n);
  } catch (const Error&) {
    return true;
  }
  return false;
}

std::string decodeError(const Bytes& in, int64_t n, int maxAlphabet = 256) {
  try {
    decode(in, n, maxAlphabet);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

uint32_t read32(const Bytes& b, size_t at) { return loadLE<uint32_t>(b.data() + at); }
void write32(Bytes& b, size_t at, uint32_t v) { storeLE<uint32_t>(b.data() + at, v); }

// Offset of the block table of a rans stream.
size_t blockTableAt(const Bytes& s) { return 4 + 2 * (size_t{s[3]} + 1); }

// A literal implementation of Note [Interleaved rANS stream] with divisions: each symbol i gives
// the word (if any) that the decoder reads right after decoding it, and the decoder visits the
// symbols of a block in index order, so the words are written in index order.
Bytes referenceRansStream(const Bytes& sym, const uint16_t* freq, int alphabet, int probBits,
                          int logBlock) {
  const int64_t n = static_cast<int64_t>(sym.size());
  const int64_t blockLen = int64_t{1} << logBlock;
  const int64_t blocks = (n + blockLen - 1) / blockLen;
  std::vector<uint32_t> cum(static_cast<size_t>(alphabet) + 1, 0);
  for (int s = 0; s < alphabet; ++s) cum[s + 1] = cum[s] + freq[s];
  Bytes out = {kModeRans, uint8_t(probBits), uint8_t(logBlock), uint8_t(alphabet - 1)};
  for (int s = 0; s < alphabet; ++s) {
    out.push_back(uint8_t(freq[s]));
    out.push_back(uint8_t(freq[s] >> 8));
  }
  const size_t table = out.size();
  out.resize(out.size() + 4 * static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * blockLen, m = std::min(blockLen, n - first);
    uint32_t x[kRansLanes];
    std::fill(x, x + kRansLanes, 1u << 15);
    std::vector<int32_t> word(static_cast<size_t>(m), -1);
    for (int64_t i = m - 1; i >= 0; --i) {
      uint32_t& st = x[i % kRansLanes];
      const uint32_t f = freq[sym[first + i]], c = cum[sym[first + i]];
      if (uint64_t{st} >= uint64_t{f} << (31 - probBits)) {
        word[i] = static_cast<int32_t>(st & 0xffff);
        st >>= 16;
      }
      st = (st / f) * (1u << probBits) + st % f + c;
    }
    const size_t start = out.size();
    for (uint32_t v : x) {
      for (int k = 0; k < 4; ++k) out.push_back(uint8_t(v >> (8 * k)));
    }
    for (int32_t w : word) {
      if (w < 0) continue;
      out.push_back(uint8_t(w));
      out.push_back(uint8_t(w >> 8));
    }
    write32(out, table + 4 * static_cast<size_t>(b), static_cast<uint32_t>(out.size() - start));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Round trips over distributions and sizes.

class RansRoundTrip : public ::testing::TestWithParam<std::tuple<Dist, int64_t>> {};

TEST_P(RansRoundTrip, RoundTripIsLosslessWithinTheBound) {
  const auto [dist, n] = GetParam();
  const Bytes sym = makeSymbols(dist, n);
  const int64_t maxSym = n == 0 ? 0 : *std::max_element(sym.begin(), sym.end());
  Bytes out(ransMaxEncodedBytes(n) + 16, 0xa5);
  const size_t bytes = ransEncode(sym.data(), n, out.data(), out.size() - 16);
  ASSERT_LE(bytes, ransMaxEncodedBytes(n));
  for (size_t i = out.size() - 16; i < out.size(); ++i) ASSERT_EQ(out[i], 0xa5) << "wrote past";
  out.resize(bytes);
  EXPECT_EQ(decode(out, n), sym);
  EXPECT_EQ(decode(out, n, static_cast<int>(maxSym) + 1), sym);
}

INSTANTIATE_TEST_SUITE_P(Sizes, RansRoundTrip,
                         ::testing::Combine(::testing::Values(Dist::kConstant, Dist::kUniform10,
                                                              Dist::kSkewed, Dist::kLaplace15,
                                                              Dist::kWide256, Dist::kBytes),
                                            ::testing::Values(int64_t{0}, int64_t{1}, int64_t{7},
                                                              int64_t{4096}, int64_t{1000003})),
                         [](const auto& info) {
                           return std::string(distName(std::get<0>(info.param))) + "_n" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(Rans, RoundTripIsLosslessForEveryBlockSizeAndPrecision) {
  for (Dist d : {Dist::kLaplace15, Dist::kWide256, Dist::kSkewed}) {
    const Bytes sym = makeSymbols(d, 100003, 7);
    for (int logBlock : {8, 9, 13, 18, 30}) {
      for (int probBits : {1, 4, 8, 11, 12, 13, 15}) {
        const RansOptions opt{probBits, logBlock};
        const Bytes out = encode(sym, opt);
        // 128 bytes of states per block outweigh the gain of small blocks on the CPU.
        if (logBlock >= 13 && probBits >= 11) {
          ASSERT_EQ(out[0], kModeRans) << distName(d) << " logBlock=" << logBlock;
        }
        if (out[0] == kModeRans) {
          EXPECT_EQ(out[2], logBlock);
          EXPECT_GE(out[1], probBits);  // raised only to make room for every distinct symbol
        }
        ASSERT_EQ(decode(out, 100003), sym)
            << distName(d) << " logBlock=" << logBlock << " probBits=" << probBits;
      }
    }
  }
}

// A consumer that streams (inference straight from a coded model) sees the same symbols, in
// order, in pieces no longer than a block, whatever the stream's mode.
TEST(Rans, ChunkedDecodingHandsOverEverySymbolInOrderInBlockSizedPieces) {
  for (const Bytes& sym : {makeSymbols(Dist::kLaplace15, 100003, 3),
                           makeSymbols(Dist::kBytes, 70001), Bytes(150000, 4), Bytes()}) {
    const int64_t n = static_cast<int64_t>(sym.size());
    const Bytes out = encode(sym, {12, 10});
    Bytes got;
    int64_t maxPiece = 0;
    ransDecodeChunks(out.data(), out.size(), n, 256,
                     [&](const uint8_t* s, int64_t first, int64_t count) {
                       ASSERT_EQ(first, static_cast<int64_t>(got.size()));
                       got.insert(got.end(), s, s + count);
                       maxPiece = std::max(maxPiece, count);
                     });
    EXPECT_EQ(got, sym) << "mode " << int(out[0]);
    EXPECT_LE(maxPiece, out[0] == kModeRans ? 1024 : 65536);
  }
  const Bytes out = encode(makeSymbols(Dist::kLaplace15, 5000), {12, 10});
  for (size_t len = 0; len < out.size(); len += 37) {
    EXPECT_THROW(
        ransDecodeChunks(out.data(), len, 5000, 256, [](const uint8_t*, int64_t, int64_t) {}),
        Error);
  }
}

TEST(Rans, ProbBitsIsRaisedJustEnoughForTheDistinctSymbols) {
  const Bytes sym = makeSymbols(Dist::kLaplace15, 50000);  // 15 distinct symbols
  EXPECT_EQ(encode(sym, {1, 18})[1], 4);
  EXPECT_EQ(encode(sym, {5, 18})[1], 5);
  Bytes hundred(65536);  // 100 distinct symbols, 6.64 bits each: rans still beats 7-bit packing
  for (size_t i = 0; i < hundred.size(); ++i) hundred[i] = static_cast<uint8_t>(i % 100);
  const Bytes out = encode(hundred, {3, 18});
  ASSERT_EQ(out[0], kModeRans);
  EXPECT_EQ(out[1], 7);
  EXPECT_EQ(decode(out, 65536), hundred);
}

TEST(Rans, EncoderMatchesTheLiteralFormatReference) {
  for (Dist d : {Dist::kLaplace15, Dist::kWide256, Dist::kSkewed, Dist::kUniform10}) {
    for (int64_t n : {int64_t{33}, int64_t{4096}, int64_t{70001}}) {
      for (int logBlock : {8, 12, 18}) {
        const Bytes sym = makeSymbols(d, n, static_cast<uint64_t>(n));
        const Bytes out = encode(sym, {12, logBlock});
        if (out[0] != kModeRans) continue;
        std::vector<uint16_t> freq(size_t{out[3]} + 1);
        std::memcpy(freq.data(), out.data() + 4, 2 * freq.size());
        EXPECT_EQ(out, referenceRansStream(sym, freq.data(), out[3] + 1, out[1], logBlock))
            << distName(d) << " n=" << n << " logBlock=" << logBlock;
      }
    }
  }
}

TEST(Rans, DecoderAcceptsAnyValidFrequencyTable) {
  // Another encoder (a GPU warp, say) may use a fixed alphabet and its own frequencies.
  const Bytes sym = makeSymbols(Dist::kLaplace15, 20011, 5);
  std::vector<uint16_t> freq(256, 0);
  for (int s = 0; s < 15; ++s) freq[s] = 4096 / 16;
  freq[7] += 4096 / 16;
  const Bytes out = referenceRansStream(sym, freq.data(), 256, 12, 8);
  EXPECT_EQ(decode(out, 20011), sym);
  std::fill(freq.begin(), freq.end(), 1);  // every symbol at probBits 8, most of them unused
  EXPECT_EQ(decode(referenceRansStream(sym, freq.data(), 256, 8, 9), 20011), sym);
}

TEST(Rans, ReciprocalDivisionIsExactForEveryFrequency) {
  std::mt19937 rng(3);
  for (int probBits : {12, 15}) {
    const uint32_t total = 1u << probBits;
    for (uint32_t f = 1; f < total; ++f) {
      const uint16_t freq[2] = {static_cast<uint16_t>(total - f), static_cast<uint16_t>(f)};
      detail::RansEncodeTable tab;
      detail::buildEncodeTable(freq, 2, probBits, &tab);
      const detail::RansEncSymbol& e = tab.sym[1];
      const uint32_t lo = f << (15 - probBits), hi = e.xmax;  // the states it is applied to
      uint32_t xs[] = {lo, lo + 1, hi - 1, hi - 2, (hi / f) * f, (hi / f) * f - 1, 0, 0};
      xs[6] = lo + rng() % (hi - lo);
      xs[7] = lo + rng() % (hi - lo);
      for (uint32_t x : xs) {
        const uint32_t q = static_cast<uint32_t>((uint64_t{x} * e.rcp) >> 32) >> e.shift;
        ASSERT_EQ(x + e.bias + q * e.cmpl, (x / f) * total + x % f + (total - f))
            << "f=" << f << " x=" << x;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Mode choice and size.

TEST(Rans, SingleValueAndEmptyInputsUseConstantMode) {
  const Bytes out = encode(Bytes(100000, 42));
  EXPECT_EQ(out, (Bytes{kModeConstant, 42, 0, 0}));
  EXPECT_EQ(decode(out, 100000), Bytes(100000, 42));
  const Bytes empty = encode(Bytes{});
  EXPECT_EQ(empty.size(), 4u);
  EXPECT_TRUE(decode(empty, 0).empty());
  EXPECT_EQ(decode(Bytes{kModePacked, 3, 0, 0}, 0).size(), 0u);
}

TEST(Rans, IncompressibleInputsFallBackToMinimalWidthPacking) {
  struct Case {
    Bytes sym;
    int width;
  };
  Bytes bits(4099), nibbles(4096);
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = static_cast<uint8_t>((i * 7 + i / 5) % 2);
  std::mt19937 rng(5);
  for (auto& v : nibbles) v = static_cast<uint8_t>(rng() % 16);
  for (const Case& c : {Case{makeSymbols(Dist::kBytes, 100000), 8}, Case{nibbles, 4}, Case{bits, 1},
                        Case{Bytes{0, 1, 0, 1, 1}, 1}}) {
    const Bytes out = encode(c.sym);
    const int64_t n = static_cast<int64_t>(c.sym.size());
    EXPECT_EQ(out[0], kModePacked);
    EXPECT_EQ(out[1], c.width);
    EXPECT_EQ(out.size(), 4 + packedBytes(n, c.width));
    EXPECT_EQ(decode(out, n), c.sym);
  }
}

TEST(Rans, RansIsChosenOnlyWhenSmallerThanPacking) {
  for (Dist d : {Dist::kUniform10, Dist::kSkewed, Dist::kLaplace15, Dist::kWide256}) {
    for (int64_t n : {int64_t{7}, int64_t{200}, int64_t{1000}, int64_t{4096}, int64_t{100000}}) {
      const Bytes sym = makeSymbols(d, n);
      const int maxSym = *std::max_element(sym.begin(), sym.end());
      int width = 1;
      while ((1 << width) <= maxSym) ++width;
      const Bytes out = encode(sym);
      ASSERT_TRUE(out[0] == kModeRans || out[0] == kModePacked);
      if (out[0] == kModeRans) {
        EXPECT_LT(out.size(), 4 + packedBytes(n, width));
      } else {
        EXPECT_EQ(out.size(), 4 + packedBytes(n, width));
      }
      if (n >= 100000) {
        EXPECT_EQ(out[0], kModeRans) << distName(d) << " n=" << n;
      }
    }
  }
}

TEST(Rans, CodedSizeIsWithinHalfAPercentOfTheEntropy) {
  const int64_t n = int64_t{1} << 20;
  for (Dist d :
       {Dist::kUniform10, Dist::kSkewed, Dist::kVerySkewed, Dist::kLaplace15, Dist::kWide256}) {
    const Bytes sym = makeSymbols(d, n, 11);
    uint64_t counts[256];
    histogram(sym.data(), n, counts);
    const double entropy = entropyBits(counts);
    const Bytes out = encode(sym);
    ASSERT_EQ(out[0], kModeRans);
    const RansOptions opt;
    const double blocks = std::ceil(double(n) / double(int64_t{1} << opt.logBlock));
    const double fixedBits = 8 * (4 + 2 * (out[3] + 1.0) + blocks * (4 + 4 * kRansLanes));
    const double payloadBits = 8.0 * double(out.size()) - fixedBits;
    std::printf("[ rans     ] %-10s H = %.4f bits/symbol; coded %.4f (%+.3f%%), %.4f with tables\n",
                distName(d), entropy / double(n), payloadBits / double(n),
                100.0 * (payloadBits / entropy - 1.0), 8.0 * double(out.size()) / double(n));
    EXPECT_LE(payloadBits, entropy * 1.005) << distName(d);
  }
}

TEST(Rans, FrequencyNormalizationMinimizesTheModelCost) {
  std::mt19937_64 rng(9);
  for (int trial = 0; trial < 300; ++trial) {
    const int probBits = 3 + trial % 3;  // totals 8..32, small enough to enumerate
    const int total = 1 << probBits;
    uint64_t counts[3];
    for (auto& c : counts) c = rng() % 4 == 0 ? 0 : 1 + rng() % (trial % 2 ? 1000 : 1000000);
    if (counts[0] + counts[1] + counts[2] == 0) counts[1] = 1;
    uint16_t freq[3];
    detail::normalizeFrequencies(counts, 3, probBits, freq);
    ASSERT_EQ(freq[0] + freq[1] + freq[2], total);
    double best = std::numeric_limits<double>::infinity();
    for (int a = 0; a <= total; ++a) {
      for (int b = 0; a + b <= total; ++b) {
        const uint16_t f[3] = {uint16_t(a), uint16_t(b), uint16_t(total - a - b)};
        bool ok = true;
        for (int s = 0; s < 3; ++s) ok = ok && ((counts[s] > 0) == (f[s] > 0));
        if (ok) best = std::min(best, detail::modelBits(counts, f, 3, probBits));
      }
    }
    EXPECT_LE(detail::modelBits(counts, freq, 3, probBits), best * (1 + 1e-9) + 1e-9)
        << counts[0] << " " << counts[1] << " " << counts[2] << " probBits=" << probBits;
  }
}

TEST(Rans, ArgumentsOutsideTheirRangesThrow) {
  const Bytes sym = makeSymbols(Dist::kLaplace15, 1000);
  Bytes out(ransMaxEncodedBytes(1000));
  EXPECT_THROW(ransMaxEncodedBytes(-1), Error);
  EXPECT_THROW(ransMaxEncodedBytes(10, {0, 18}), Error);
  EXPECT_THROW(ransMaxEncodedBytes(10, {16, 18}), Error);
  EXPECT_THROW(ransMaxEncodedBytes(10, {12, 7}), Error);
  EXPECT_THROW(ransMaxEncodedBytes(10, {12, 31}), Error);
  EXPECT_THROW(ransEncode(sym.data(), 1000, out.data(), out.size() - 1), Error);
  uint64_t wrong[256] = {};
  wrong[7] = 999;
  EXPECT_THROW(ransEncode(sym.data(), 1000, out.data(), out.size(), {}, wrong), Error);
  const Bytes good = encode(sym);
  Bytes back(1000);
  EXPECT_THROW(ransDecode(good.data(), good.size(), 1000, back.data(), 0), Error);
  EXPECT_THROW(ransDecode(good.data(), good.size(), 1000, back.data(), 257), Error);
  EXPECT_THROW(ransDecode(good.data(), good.size(), -1, back.data()), Error);
}

TEST(Rans, PrecomputedCountsGiveTheSameStream) {
  const Bytes sym = makeSymbols(Dist::kWide256, 30000);
  uint64_t counts[256];
  histogram(sym.data(), 30000, counts);
  Bytes out(ransMaxEncodedBytes(30000));
  out.resize(ransEncode(sym.data(), 30000, out.data(), out.size(), {}, counts));
  EXPECT_EQ(out, encode(sym));
}

// ---------------------------------------------------------------------------------------------
// Corrupt streams.

TEST(Rans, SymbolsAtOrAboveMaxAlphabetAreRejected) {
  const Bytes sym = makeSymbols(Dist::kLaplace15, 20000);
  const int maxSym = *std::max_element(sym.begin(), sym.end());
  EXPECT_EQ(decode(encode(sym), 20000, maxSym + 1), sym);
  EXPECT_THAT(decodeError(encode(sym), 20000, maxSym), ::testing::HasSubstr("alphabet"));
  EXPECT_THAT(decodeError(encode(Bytes(50, 200)), 50, 200), ::testing::HasSubstr("symbol 200"));
  Bytes packed = {kModePacked, 2, 0, 0, 0x1b};  // symbols 3, 2, 1, 0
  EXPECT_EQ(decode(packed, 4, 4), (Bytes{3, 2, 1, 0}));
  EXPECT_THAT(decodeError(packed, 4, 3), ::testing::HasSubstr("symbol 3 at index 0"));
  packed = {kModePacked, 2, 0, 0, 0xcb};
  EXPECT_THAT(decodeError(packed, 3, 4), ::testing::HasSubstr("padding"));
}

TEST(Rans, EveryTruncationThrows) {
  std::vector<int> modes;
  for (const Bytes& sym :
       {makeSymbols(Dist::kSkewed, 3000), makeSymbols(Dist::kBytes, 300), Bytes(10, 1)}) {
    const Bytes out = encode(sym, {12, 10});
    modes.push_back(out[0]);
    const int64_t n = static_cast<int64_t>(sym.size());
    for (size_t len = 0; len < out.size(); ++len) {
      ASSERT_TRUE(decodeThrows(Bytes(out.begin(), out.begin() + len), n)) << "length " << len;
    }
    Bytes longer = out;
    longer.push_back(0);
    EXPECT_TRUE(decodeThrows(longer, n));
  }
  EXPECT_EQ(modes, (std::vector<int>{kModeRans, kModePacked, kModeConstant}));
}

TEST(Rans, CorruptBlockTablesAndStatesThrowNamingTheProblem) {
  const int64_t n = 5000;
  const Bytes good = encode(makeSymbols(Dist::kLaplace15, n), {12, 10});  // 5 blocks
  ASSERT_EQ(good[0], kModeRans);
  const size_t table = blockTableAt(good);
  const size_t block0 = table + 4 * 5;
  auto expectError = [&](Bytes bad, const char* what) {
    EXPECT_THAT(decodeError(bad, n), ::testing::HasSubstr(what));
  };
  Bytes bad = good;
  write32(bad, table, read32(bad, table) + 2);
  expectError(bad, "follow the block table");
  bad = good;
  write32(bad, table, read32(bad, table) + 2);
  write32(bad, table + 4, read32(bad, table + 4) - 2);
  expectError(bad, "rans block");
  bad = good;
  write32(bad, table + 8, 126);
  expectError(bad, "rans block 2: size 126");
  bad = good;
  write32(bad, block0 + 4 * 3, 0x7fff);
  expectError(bad, "rans block 0: initial state 32767 of lane 3");
  bad = good;
  write32(bad, block0 + 4 * 3, 0x80000000u);
  expectError(bad, "outside [2^15, 2^31)");
  bad = good;
  bad[block0 + 4 * 7] ^= 1;
  expectError(bad, "rans block 0");
  // Two extra bytes at the end of the last block: the decoder finishes one word early.
  bad = good;
  bad.insert(bad.end(), {0x12, 0x34});
  write32(bad, table + 16, read32(bad, table + 16) + 2);
  expectError(bad, "rans block 4: 1 words left over");
  bad = good;
  bad[4] ^= 4;  // a frequency
  expectError(bad, "frequencies sum to");
  // The wrong element count changes the last block and is caught by its final states.
  EXPECT_TRUE(decodeThrows(good, n - 1));
  EXPECT_TRUE(decodeThrows(good, n + 1));
  EXPECT_TRUE(decodeThrows(good, n + 1024));
  EXPECT_THAT(decodeError(Bytes{7, 0, 0, 0}, 0), ::testing::HasSubstr("unknown mode 7"));
  EXPECT_THAT(decodeError(Bytes{kModeConstant, 1, 0, 0, 0}, 5), ::testing::HasSubstr("constant"));
}

TEST(Rans, SingleBitFlipsNeverCrashAndHeadersAndTablesAlwaysThrow) {
  const int64_t n = 6000;
  const Bytes sym = makeSymbols(Dist::kLaplace15, n, 13);
  const Bytes good = encode(sym, {12, 10});  // 6 blocks
  ASSERT_EQ(good[0], kModeRans);
  const size_t blocksAt = blockTableAt(good) + 4 * 6;
  int64_t flips = 0, caught = 0;
  for (size_t bit = 0; bit < 8 * good.size(); ++bit) {
    Bytes bad = good;
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    const bool thrown = decodeThrows(bad, n);
    // Mode, probBits, logBlock, alphabet, frequencies (the sum moves by 2^k) and block sizes
    // (their total moves) are checked exactly.
    if (bit / 8 < blocksAt) {
      ASSERT_TRUE(thrown) << "byte " << bit / 8 << " bit " << bit % 8;
    }
    ++flips;
    caught += thrown ? 1 : 0;
  }
  // States and words are covered by the final-state check, which a flip escapes only with a
  // probability of the order of 2^-15; the codec's xxhash64 covers the rest.
  std::printf("[ rans     ] %lld of %lld single-bit flips detected\n",
              static_cast<long long>(caught), static_cast<long long>(flips));
  EXPECT_GE(caught, flips - flips / 1000);
}

TEST(Rans, RandomlyCorruptedStreamsNeverCrash) {
  std::mt19937_64 rng(17);
  std::vector<Bytes> streams;
  for (Dist d : {Dist::kLaplace15, Dist::kWide256, Dist::kBytes, Dist::kSkewed}) {
    streams.push_back(encode(makeSymbols(d, 4000, 3), {12, 10}));
  }
  Bytes sym(4000);
  for (int trial = 0; trial < 4000; ++trial) {
    Bytes bad = streams[trial % streams.size()];
    const int kind = trial % 4;
    if (kind == 0) {
      for (int k = 0; k < 3; ++k) bad[rng() % bad.size()] = static_cast<uint8_t>(rng());
    } else if (kind == 1) {
      bad.resize(rng() % (bad.size() + 64), static_cast<uint8_t>(rng()));
    } else if (kind == 2) {
      for (size_t i = 4; i < bad.size(); ++i) bad[i] = static_cast<uint8_t>(rng());
    } else {
      const size_t at = 4 + rng() % (bad.size() - 7);
      write32(bad, at, static_cast<uint32_t>(rng()));
    }
    const int64_t n = 1 + static_cast<int64_t>(rng() % 4000);
    try {
      ransDecode(bad.data(), bad.size(), trial % 7 == 0 ? n : 4000, sym.data(),
                 1 + static_cast<int>(rng() % 256));
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace cdl::kernels
