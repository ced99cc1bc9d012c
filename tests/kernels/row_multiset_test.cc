#include "kernels/row_multiset.h"
#include "tests/support/error_of.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/base/error.h"
#include "kernels/histogram.h"

namespace cdl::kernels {
namespace {

using Bytes = std::vector<uint8_t>;
using ::testing::HasSubstr;

// A matrix of byte symbols, row-major.
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  Bytes sym;
  const uint8_t* row(int64_t r) const { return sym.data() + r * cols; }
};

// splitmix64: the same numbers from every standard library (unlike std::*_distribution).
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
};

Matrix randomMatrix(int64_t rows, int64_t cols, int alphabet, uint64_t seed) {
  SplitMix rng{seed};
  Matrix m{rows, cols, Bytes(static_cast<size_t>(rows * cols))};
  for (auto& v : m.sym) v = static_cast<uint8_t>(rng.below(alphabet));
  return m;
}

// A layer whose rows are `distinct` random rows, row i used multiplicity(i) times, shuffled.
template <typename Multiplicity>
Matrix layerWithDuplicates(int64_t distinct, int64_t cols, int alphabet, Multiplicity mult,
                           uint64_t seed) {
  const Matrix base = randomMatrix(distinct, cols, alphabet, seed);
  std::vector<int64_t> use;
  for (int64_t i = 0; i < distinct; ++i) use.insert(use.end(), mult(i), i);
  std::shuffle(use.begin(), use.end(), std::mt19937_64(seed + 1));
  Matrix m{static_cast<int64_t>(use.size()), cols, {}};
  for (const int64_t i : use) m.sym.insert(m.sym.end(), base.row(i), base.row(i) + cols);
  return m;
}

Matrix withRowsSorted(const Matrix& m) {
  std::vector<Bytes> rows;
  for (int64_t r = 0; r < m.rows; ++r) rows.emplace_back(m.row(r), m.row(r) + m.cols);
  std::sort(rows.begin(), rows.end());
  Matrix s{m.rows, m.cols, {}};
  for (const auto& r : rows) s.sym.insert(s.sym.end(), r.begin(), r.end());
  return s;
}

Bytes encode(const Matrix& m, int alphabet, bool ordered) {
  Bytes out(rowMultisetMaxEncodedBytes(m.rows, m.cols, alphabet));
  out.resize(
      rowMultisetEncode(m.sym.data(), m.rows, m.cols, alphabet, ordered, out.data(), out.size()));
  return out;
}

Bytes decode(const Bytes& in, int64_t rows, int64_t cols, int alphabet) {
  Bytes sym(static_cast<size_t>(rows * cols));
  rowMultisetDecode(in.data(), in.size(), rows, cols, alphabet, sym.data());
  return sym;
}

using test::errorOf;

// log2(rows! / prod m!) from the row multiplicities, summing log2 of integers.
double permutationBitsByCounting(const Matrix& m) {
  std::map<Bytes, int64_t> mult;
  for (int64_t r = 0; r < m.rows; ++r) ++mult[Bytes(m.row(r), m.row(r) + m.cols)];
  double bits = 0;
  for (int64_t i = 2; i <= m.rows; ++i) bits += std::log2(static_cast<double>(i));
  for (const auto& [row, k] : mult) {
    for (int64_t i = 2; i <= k; ++i) bits -= std::log2(static_cast<double>(i));
  }
  return bits;
}

enum class Kind { kRandom, kIdentical, kDuplicates };

Matrix makeMatrix(Kind kind, int64_t rows, int64_t cols, int alphabet, uint64_t seed) {
  switch (kind) {
    case Kind::kRandom:
      return randomMatrix(rows, cols, alphabet, seed);
    case Kind::kIdentical:
      return layerWithDuplicates(
          rows > 0 ? 1 : 0, cols, alphabet, [&](int64_t) { return rows; }, seed);
    case Kind::kDuplicates:
      // Few distinct rows (rows / 4 + 1), used 2..7 times, cut to rows.
      Matrix m = layerWithDuplicates(
          rows / 4 + 1, cols, alphabet, [](int64_t i) { return 2 + i % 6; }, seed);
      m.rows = std::min(m.rows, rows);
      m.sym.resize(static_cast<size_t>(m.rows * cols));
      return m;
  }
  return {};
}

using RoundTripParam = std::tuple<int, int64_t, int64_t, Kind>;  // alphabet, rows, cols, kind

class RowMultisetRoundTrip : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(RowMultisetRoundTrip, DecodesTheRowsSortedAndOrderedModeKeepsTheirOrder) {
  const auto [alphabet, rows, cols, kind] = GetParam();
  const Matrix m = makeMatrix(kind, rows, cols, alphabet, 1000 + rows * 7 + cols);
  ASSERT_EQ(m.rows, rows);
  const Bytes multiset = encode(m, alphabet, false);
  EXPECT_EQ(decode(multiset, rows, cols, alphabet), withRowsSorted(m).sym);
  const Bytes ordered = encode(m, alphabet, true);
  EXPECT_EQ(decode(ordered, rows, cols, alphabet), m.sym);
  EXPECT_LE(multiset.size(), encode(withRowsSorted(m), alphabet, true).size());
}

INSTANTIATE_TEST_SUITE_P(Shapes, RowMultisetRoundTrip,
                         ::testing::Combine(::testing::Values(2, 16, 256),
                                            ::testing::Values<int64_t>(0, 1, 2, 9, 100, 300),
                                            ::testing::Values<int64_t>(0, 1, 3, 40),
                                            ::testing::Values(Kind::kRandom, Kind::kIdentical,
                                                              Kind::kDuplicates)));

struct SavingCase {
  const char* name;
  Matrix m;
};

// Shuffled layers with known multiplicities: 8 * (ordered - multiset bytes) is the saving.
// slackBits allows for the sizes' rounding to words and the state's slack when the bound is small.
void expectSavingNearTheBound(const SavingCase& c, int alphabet, double slackBits = 0) {
  const Matrix& m = c.m;
  const double bound = rowPermutationBits(m.sym.data(), m.rows, m.cols);
  EXPECT_NEAR(bound, permutationBitsByCounting(m), 1e-6 * bound) << c.name;
  const Bytes multiset = encode(m, alphabet, false);
  const Bytes ordered = encode(m, alphabet, true);
  const double saved = 8.0 * (static_cast<double>(ordered.size()) - multiset.size());
  std::printf("[ saving ] %s: ordered %zu B, multiset %zu B, saved %.0f bits, bound %.1f bits\n",
              c.name, ordered.size(), multiset.size(), saved, bound);
  EXPECT_NEAR(saved, bound, 0.01 * bound + slackBits) << c.name;
  EXPECT_EQ(decode(multiset, m.rows, m.cols, alphabet), withRowsSorted(m).sym) << c.name;
}

TEST(RowMultiset, SavingIsWithinOnePercentOfThePermutationBound) {
  expectSavingNearTheBound(
      {"1024x64 4-bit, 512 rows twice", layerWithDuplicates(
                                            512, 64, 16, [](int64_t) { return 2; }, 7)},
      16);
  expectSavingNearTheBound({"2048x32 4-bit, multiplicities 1..4",
                            layerWithDuplicates(
                                820, 32, 16, [](int64_t i) { return 1 + i % 4; }, 8)},
                           16);
  expectSavingNearTheBound({"256x784 8-bit, distinct", randomMatrix(256, 784, 256, 9)}, 256, 32);
}

TEST(RowMultiset, PermutationBitsAreLog2OfTheDistinctOrderings) {
  EXPECT_EQ(rowPermutationBits(nullptr, 0, 5), 0.0);
  const Matrix same = makeMatrix(Kind::kIdentical, 50, 3, 4, 1);
  EXPECT_NEAR(rowPermutationBits(same.sym.data(), 50, 3), 0.0, 1e-9);
  const Matrix distinct = randomMatrix(6, 40, 256, 2);
  EXPECT_NEAR(rowPermutationBits(distinct.sym.data(), 6, 40), std::log2(720.0), 1e-9);
  const Matrix dup = makeMatrix(Kind::kDuplicates, 300, 5, 16, 3);
  EXPECT_NEAR(rowPermutationBits(dup.sym.data(), 300, 5), permutationBitsByCounting(dup), 1e-6);
}

TEST(RowMultiset, OrderedSizeIsWithinHalfAPercentOfTheEntropy) {
  // 4-bit quantized weights shaped like a bell (~3 bits a symbol).
  std::mt19937_64 rng(5);
  std::normal_distribution<double> bell(7.5, 2.0);
  Matrix m{512, 1024, Bytes(512 * 1024)};
  for (auto& v : m.sym) v = static_cast<uint8_t>(std::clamp<long>(std::lround(bell(rng)), 0, 15));
  uint64_t counts[256];
  histogram(m.sym.data(), static_cast<int64_t>(m.sym.size()), counts);
  const double entropy = entropyBits(counts);
  const Bytes ordered = encode(m, 16, true);
  std::printf("[ size   ] ordered %zu B = %.0f bits, entropy %.0f bits\n", ordered.size(),
              8.0 * ordered.size(), entropy);
  EXPECT_NEAR(8.0 * ordered.size(), entropy, 0.005 * entropy + 8 * 64);
  EXPECT_EQ(decode(ordered, m.rows, m.cols, 16), m.sym);
}

// The layer shapes of the shipped models (the CNN's fc1 at 4 bits, an 8-bit MLP layer).
TEST(RowMultiset, LayerSizedMatricesRoundTrip) {
  const std::tuple<int64_t, int64_t, int> shapes[] = {{128, 1568, 16}, {256, 784, 256}};
  for (const auto& [rows, cols, alphabet] : shapes) {
    const Matrix m = randomMatrix(rows, cols, alphabet, 11);
    EXPECT_EQ(decode(encode(m, alphabet, false), rows, cols, alphabet), withRowsSorted(m).sym);
  }
}

TEST(RowMultiset, RowsUpToTheLimitCodeAsAMultiset) {
  const Matrix m = randomMatrix(kRowMultisetMaxRows, 2, 4, 12);
  const Bytes multiset = encode(m, 4, false);
  EXPECT_EQ(multiset[0], 0x11);
  EXPECT_EQ(decode(multiset, m.rows, m.cols, 4), withRowsSorted(m).sym);
}

TEST(RowMultiset, MultisetStreamDoesNotDependOnTheRowOrder) {
  const Matrix m = makeMatrix(Kind::kDuplicates, 200, 9, 16, 18);
  Matrix reversed = m;
  for (int64_t r = 0; r < m.rows; ++r) {
    std::memcpy(&reversed.sym[r * m.cols], m.row(m.rows - 1 - r), m.cols);
  }
  EXPECT_EQ(encode(m, 16, false), encode(reversed, 16, false));
  EXPECT_NE(encode(m, 16, true), encode(reversed, 16, true));
}

TEST(RowMultiset, StreamBytesAreTheSameOnEveryMachine) {
  // Pins the binomial tables and the coder: an FNV-1a hash of a stream with many trie nodes. The
  // multiset stream does not depend on the (library-specific) shuffle of the rows.
  const Matrix m = layerWithDuplicates(
      300, 24, 16, [](int64_t i) { return 1 + i % 3; }, 13);
  const Bytes multiset = encode(m, 16, false);
  uint64_t h = 1469598103934665603ull;
  for (const uint8_t b : multiset) h = (h ^ b) * 1099511628211ull;
  std::printf("[ golden ] %zu bytes, hash 0x%016llx\n", multiset.size(),
              static_cast<unsigned long long>(h));
  EXPECT_EQ(multiset[0], 0x11);
  EXPECT_EQ(multiset.size(), 6701u);
  EXPECT_EQ(h, 0xf5d7ba452eff6bf6ull);
}

TEST(RowMultiset, EveryTruncationIsRejected) {
  const Matrix m = makeMatrix(Kind::kDuplicates, 24, 10, 16, 14);
  for (const bool ordered : {false, true}) {
    const Bytes full = encode(m, 16, ordered);
    for (size_t len = 0; len < full.size(); ++len) {
      const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
      EXPECT_NE(errorOf([&] { decode(cut, m.rows, m.cols, 16); }), "no error")
          << "ordered " << ordered << ", length " << len << " of " << full.size();
    }
    Bytes longer = full;
    longer.push_back(0);
    EXPECT_NE(errorOf([&] { decode(longer, m.rows, m.cols, 16); }), "no error");
  }
}

TEST(RowMultiset, BitFlipsAreRejectedOrDecodeToSomeMatrix) {
  const Matrix m = makeMatrix(Kind::kDuplicates, 40, 12, 16, 15);
  int rejected = 0, flips = 0;
  for (const bool ordered : {false, true}) {
    const Bytes full = encode(m, 16, ordered);
    for (size_t at = 0; at < full.size(); ++at) {
      for (int bit = 0; bit < 8; ++bit, ++flips) {
        Bytes bad = full;
        bad[at] = static_cast<uint8_t>(bad[at] ^ (1u << bit));
        Bytes sym(static_cast<size_t>(m.rows * m.cols));
        try {
          rowMultisetDecode(bad.data(), bad.size(), m.rows, m.cols, 16, sym.data());
        } catch (const Error&) {
          ++rejected;
        }
      }
    }
  }
  std::printf("[ flips  ] %d of %d single-bit flips rejected\n", rejected, flips);
  EXPECT_GT(rejected, flips / 2);
}

TEST(RowMultiset, RandomWordsAfterAValidTableAreRejectedOrDecoded) {
  const Matrix m = makeMatrix(Kind::kDuplicates, 64, 16, 16, 19);
  const Bytes good = encode(m, 16, false);
  const size_t wordsAt = 3 + 2 * 16;
  SplitMix rng{20};
  int rejected = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    Bytes bad(good.begin(), good.begin() + wordsAt);
    bad.resize(wordsAt + 8 + 2 * static_cast<size_t>(rng.below(300)));
    for (size_t i = wordsAt; i < bad.size(); ++i) bad[i] = static_cast<uint8_t>(rng.next());
    bad[0] = trial % 2 ? 0x10 : 0x11;  // the format byte
    Bytes sym(static_cast<size_t>(m.rows * m.cols));
    try {
      rowMultisetDecode(bad.data(), bad.size(), m.rows, m.cols, 16, sym.data());
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1900);
}

TEST(RowMultiset, BadArgumentsThrowNamingTheProblem) {
  const Matrix m = randomMatrix(4, 3, 16, 16);
  Bytes out(1000);
  auto enc = [&](const Matrix& x, int alphabet, bool ordered, size_t cap) {
    return errorOf([&] {
      rowMultisetEncode(x.sym.data(), x.rows, x.cols, alphabet, ordered, out.data(), cap);
    });
  };
  EXPECT_THAT(enc(m, 0, false, out.size()), HasSubstr("alphabet = 0"));
  EXPECT_THAT(enc(m, 257, false, out.size()), HasSubstr("alphabet = 257"));
  EXPECT_THAT(enc(m, 8, false, out.size()), HasSubstr("not below alphabet 8"));
  const size_t bound = rowMultisetMaxEncodedBytes(4, 3, 16);
  EXPECT_THAT(enc(m, 16, false, bound - 1), HasSubstr("capacity"));
  EXPECT_THAT(errorOf([&] { rowMultisetMaxEncodedBytes(-1, 3, 16); }), HasSubstr("negative"));
  const Matrix tall = randomMatrix(kRowMultisetMaxRows + 1, 1, 2, 17);
  out.resize(rowMultisetMaxEncodedBytes(tall.rows, 1, 2));
  EXPECT_THAT(enc(tall, 2, false, out.size()), HasSubstr("multiset limit of 32767"));
  EXPECT_EQ(enc(tall, 2, true, out.size()), "no error");  // in order, any number of rows

  const Bytes s = encode(m, 16, false);
  EXPECT_THAT(errorOf([&] { decode(s, 4, 3, 15); }), HasSubstr("alphabet of 16"));
  Bytes bad = s;
  bad[0] = 0x20;
  EXPECT_THAT(errorOf([&] { decode(bad, 4, 3, 16); }), HasSubstr("format byte"));
  bad = s;
  bad[3] ^= 1;  // the first frequency
  EXPECT_THAT(errorOf([&] { decode(bad, 4, 3, 16); }), HasSubstr("frequencies sum"));
  EXPECT_THAT(errorOf([&] { decode(s, kRowMultisetMaxRows + 1, 3, 16); }),
              HasSubstr("multiset limit"));
}

}  // namespace
}  // namespace cdl::kernels
