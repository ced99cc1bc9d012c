#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu_dispatch.h"
#include "kernels/error.h"
#include "kernels/rans_table.h"

namespace cdl::kernels::detail {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Bits saved by raising a frequency from f to f + 1, and lost by lowering it to f - 1, for each
// occurrence of the symbol.
inline double raiseGain(int64_t f) { return std::log1p(1.0 / static_cast<double>(f)); }
inline double lowerLoss(int64_t f) {
  return f > 1 ? -std::log1p(-1.0 / static_cast<double>(f)) : kInf;
}

// The greedy moves compare count * gain in natural-log units; a move is taken only when it saves
// more than this relative margin, so rounding noise cannot make two moves undo each other.
constexpr double kMargin = 1e-12;

}  // namespace

void normalizeFrequencies(const uint64_t* counts, int alphabet, int probBits, uint16_t* freq) {
  const int64_t total = int64_t{1} << probBits;
  uint64_t n = 0;
  int distinct = 0;
  for (int s = 0; s < alphabet; ++s) {
    n += counts[s];
    distinct += counts[s] > 0 ? 1 : 0;
  }
  CDL_CHECK(distinct >= 1 && distinct <= total, "rans: ", distinct,
            " distinct symbols do not fit probBits = ", probBits);

  // Start from the rounded proportional share, at least 1 for every present symbol.
  std::vector<int64_t> f(static_cast<size_t>(alphabet), 0);
  const double scale = static_cast<double>(total) / static_cast<double>(n);
  int64_t sum = 0;
  for (int s = 0; s < alphabet; ++s) {
    if (counts[s] == 0) continue;
    const int64_t share = std::llround(static_cast<double>(counts[s]) * scale);
    f[s] = std::clamp<int64_t>(share, 1, total);
    sum += f[s];
  }

  // The cost sum_s counts[s] * -log(f[s]) is separable and convex in the f[s], so unit moves that
  // each change the cost the least reach the optimum for the sum, and exchanges of one unit
  // between two symbols stop improving exactly at the optimum.
  std::vector<double> gain(static_cast<size_t>(alphabet), -kInf);
  std::vector<double> loss(static_cast<size_t>(alphabet), kInf);
  auto update = [&](int s) {
    const double c = static_cast<double>(counts[s]);
    gain[s] = c * raiseGain(f[s]);
    loss[s] = f[s] > 1 ? c * lowerLoss(f[s]) : kInf;
  };
  for (int s = 0; s < alphabet; ++s) {
    if (counts[s] > 0) update(s);
  }
  auto bestRaise = [&]() {
    return static_cast<int>(std::max_element(gain.begin(), gain.end()) - gain.begin());
  };
  auto bestLower = [&](int except) {
    int best = -1;
    for (int s = 0; s < alphabet; ++s) {
      if (s != except && loss[s] < kInf && (best < 0 || loss[s] < loss[best])) best = s;
    }
    return best;
  };
  for (; sum < total; ++sum) {
    const int s = bestRaise();
    ++f[s];
    update(s);
  }
  for (; sum > total; --sum) {
    const int s = bestLower(-1);
    --f[s];
    update(s);
  }
  // Every exchange lowers the cost, so this ends; the bound only guards against float surprises.
  for (int iter = 0; iter < 16 * alphabet + 64; ++iter) {
    const int up = bestRaise();
    const int down = bestLower(up);
    if (down < 0 || gain[up] <= loss[down] * (1.0 + kMargin)) break;
    ++f[up];
    --f[down];
    update(up);
    update(down);
  }
  for (int s = 0; s < alphabet; ++s) freq[s] = static_cast<uint16_t>(f[s]);
}

double modelBits(const uint64_t* counts, const uint16_t* freq, int alphabet, int probBits) {
  double bits = 0.0;
  for (int s = 0; s < alphabet; ++s) {
    if (counts[s] == 0) continue;
    bits += static_cast<double>(counts[s]) * (probBits - std::log2(static_cast<double>(freq[s])));
  }
  return bits;
}

void buildEncodeTable(const uint16_t* freq, int alphabet, int probBits, RansEncSymbol* tab) {
  const uint32_t total = 1u << probBits;
  uint32_t cum = 0;
  for (int s = 0; s < 256; ++s) {
    RansEncSymbol& e = tab[s];
    e = RansEncSymbol{};
    const uint32_t f = s < alphabet ? freq[s] : 0;
    if (f == 0) continue;
    e.xmax = f << (31 - probBits);
    e.cmpl = static_cast<uint16_t>(total - f);
    if (f == 1) {
      // mulhi32(x, 2^32 - 1) = x - 1 for 1 <= x < 2^32, so q = x - 1 and the bias adds back the
      // missing (2^probBits - 1).
      e.rcp = ~0u;
      e.shift = 0;
      e.bias = cum + total - 1;
    } else {
      // With 2^(k-1) < f <= 2^k, rcp = ceil(2^(31+k) / f) < 2^32 gives
      // floor(x * rcp / 2^(31+k)) = floor(x / f) for all x < 2^31.
      int k = 0;
      while ((1u << k) < f) ++k;
      e.rcp = static_cast<uint32_t>(((uint64_t{1} << (31 + k)) + f - 1) / f);
      e.shift = static_cast<uint16_t>(k - 1);
      e.bias = cum;
    }
    cum += f;
  }
}

namespace {

// One symbol, with room for a word at p - 2 guaranteed: the word is always stored and the pointer
// moves only when the state really gives it up.
inline void putSymbol(uint32_t& x, const RansEncSymbol& sym, uint8_t*& p) {
  const RansEncSymbol e = sym;
  uint32_t s = x;
  const uint32_t emit = s >= e.xmax ? 1 : 0;
  store16(p - 2, static_cast<uint16_t>(s));
  p -= 2 * emit;
  s >>= kRansWordBits * emit;
  const uint32_t q = static_cast<uint32_t>((uint64_t{s} * e.rcp) >> 32) >> e.shift;
  x = s + e.bias + q * e.cmpl;
}

// One symbol when the words may run into lo; false when they would.
inline bool putSymbolChecked(uint32_t& x, const RansEncSymbol& e, uint8_t*& p,
                             const uint8_t* lo) {
  if (x >= e.xmax) {
    if (p == lo) return false;
    p -= 2;
    store16(p, static_cast<uint16_t>(x));
    x >>= kRansWordBits;
  }
  const uint32_t q = static_cast<uint32_t>((uint64_t{x} * e.rcp) >> 32) >> e.shift;
  x = x + e.bias + q * e.cmpl;
  return true;
}

// Encodes the full steps [0, steps) last to first; returns false when the words reach lo.
CDL_TARGET_CLONES bool encodeSteps(const uint8_t* sym, int64_t steps, const RansEncSymbol* tab,
                                   uint32_t* x, uint8_t*& pos, const uint8_t* lo) {
  uint8_t* p = pos;
  bool fits = true;
  for (int64_t t = steps - 1; t >= 0 && fits; --t) {
    const uint8_t* s = sym + t * kRansLanes;
    if (p - lo >= 2 * kRansLanes) {
#pragma GCC unroll 32
      for (int l = kRansLanes - 1; l >= 0; --l) putSymbol(x[l], tab[s[l]], p);
    } else {
      for (int l = kRansLanes - 1; l >= 0 && fits; --l) {
        fits = putSymbolChecked(x[l], tab[s[l]], p, lo);
      }
    }
  }
  pos = p;
  return fits;
}

}  // namespace

int64_t encodeBlock(const uint8_t* sym, int64_t m, const RansEncSymbol* tab, uint8_t* block,
                    size_t room) {
  if (room < kRansStateBytes) return -1;
  uint8_t* const lo = block + kRansStateBytes;
  uint8_t* const hi = lo + ((room - kRansStateBytes) & ~size_t{1});
  uint8_t* p = hi;
  uint32_t x[kRansLanes];
  std::fill(x, x + kRansLanes, kRansLow);

  // The decoder goes forward, so the encoder starts with the last (possibly partial) step.
  const int64_t steps = m / kRansLanes;
  const int rest = static_cast<int>(m % kRansLanes);
  const uint8_t* last = sym + steps * kRansLanes;
  for (int l = rest - 1; l >= 0; --l) {
    if (!putSymbolChecked(x[l], tab[last[l]], p, lo)) return -1;
  }
  if (!encodeSteps(sym, steps, tab, x, p, lo)) return -1;

  for (int l = 0; l < kRansLanes; ++l) store32(block + 4 * l, x[l]);
  const size_t wordBytes = static_cast<size_t>(hi - p);
  std::memmove(lo, p, wordBytes);
  return static_cast<int64_t>(kRansStateBytes + wordBytes);
}

}  // namespace cdl::kernels::detail
