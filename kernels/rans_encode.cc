#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(CDL_NO_TARGET_CLONES)
#include <immintrin.h>

#include "kernels/base/cpu_dispatch.h"
#define CDL_RANS_AVX2 1
#endif

#include "kernels/base/error.h"
#include "kernels/rans_table.h"

namespace cdl::kernels::detail {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Cost (in nats) saved by raising a frequency from f to f + 1, and added by lowering it to f - 1,
// for each occurrence of the symbol.
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

void buildEncodeTable(const uint16_t* freq, int alphabet, int probBits, RansEncodeTable* t) {
  const uint32_t total = 1u << probBits;
  t->probBits = probBits;
  uint32_t cum = 0;
  for (int s = 0; s < 256; ++s) {
    RansEncSymbol& e = t->sym[s];
    e = RansEncSymbol{};
    const uint32_t f = s < alphabet ? freq[s] : 0;
    if (f > 0) {
      e.xmax = f << (31 - probBits);
      e.cmpl = static_cast<uint16_t>(total - f);
      if (f == 1) {
        // mulhi32(x, 2^32 - 1) = x - 1 for 1 <= x < 2^32, so q = x - 1 and the bias adds back
        // the missing 2^probBits - 1.
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
    t->rcp[s] = e.rcp;
    t->biasCmpl[s] = e.bias | uint32_t{e.cmpl} << 16;
  }
}

namespace {

// One symbol, with room for a word at p - 2 guaranteed: the word is always stored and the pointer
// moves only when the state really gives it up.
inline void putSymbol(uint32_t& x, const RansEncSymbol& sym, uint8_t*& p) {
  const RansEncSymbol e = sym;
  uint32_t s = x;
  const uint32_t emit = s >= e.xmax ? 1 : 0;
  storeLE<uint16_t>(p - 2, static_cast<uint16_t>(s));
  p -= 2 * emit;
  s >>= kRansWordBits * emit;
  const uint32_t q = static_cast<uint32_t>((uint64_t{s} * e.rcp) >> 32) >> e.shift;
  x = s + e.bias + q * e.cmpl;
}

// One symbol when the words may run into lo; false when they would.
inline bool putSymbolChecked(uint32_t& x, const RansEncSymbol& e, uint8_t*& p, const uint8_t* lo) {
  if (x >= e.xmax) {
    if (p == lo) return false;
    p -= 2;
    storeLE<uint16_t>(p, static_cast<uint16_t>(x));
    x >>= kRansWordBits;
  }
  const uint32_t q = static_cast<uint32_t>((uint64_t{x} * e.rcp) >> 32) >> e.shift;
  x = x + e.bias + q * e.cmpl;
  return true;
}

// Encodes the full steps [0, steps) last to first; returns false when the words reach lo.
bool encodeStepsScalar(const uint8_t* sym, int64_t steps, const RansEncSymbol* tab, uint32_t* x,
                       uint8_t*& pos, const uint8_t* lo) {
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

#ifdef CDL_RANS_AVX2

// For each 8-bit mask of lanes that give up a word, a byte shuffle that moves those lanes' 16-bit
// words, in lane order, to the top of a 16-byte vector.
struct CompressTable {
  uint8_t v[256][16] = {};
  constexpr CompressTable() {
    for (int m = 0; m < 256; ++m) {
      int count = 0;
      for (int i = 0; i < 8; ++i) count += (m >> i) & 1;
      for (int j = 0; j < 16; ++j) v[m][j] = 0x80;
      int slot = 8 - count;
      for (int i = 0; i < 8; ++i) {
        if (((m >> i) & 1) == 0) continue;
        v[m][2 * slot] = static_cast<uint8_t>(2 * i);
        v[m][2 * slot + 1] = static_cast<uint8_t>(2 * i + 1);
        ++slot;
      }
    }
  }
};
constexpr CompressTable kCompress;

// The same steps as encodeStepsScalar, eight lanes to a vector, while at least a step's worth of
// room is left above lo; returns the number of steps still to encode, [0, returned).
__attribute__((target("avx2,popcnt"))) int64_t encodeStepsAvx2(const uint8_t* sym, int64_t steps,
                                                               const RansEncodeTable& table,
                                                               uint32_t* x, uint8_t*& pos,
                                                               const uint8_t* lo) {
  constexpr int kVectors = kRansLanes / 8;
  const __m256i total = _mm256_set1_epi32(1 << table.probBits);
  const __m128i xmaxShift = _mm_cvtsi32_si128(31 - table.probBits);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i low16 = _mm256_set1_epi32(0xffff);
  const __m256i exponentBias = _mm256_set1_epi32(127);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i halves = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  const int* rcpBase = reinterpret_cast<const int*>(table.rcp);
  const int* biasCmplBase = reinterpret_cast<const int*>(table.biasCmpl);
  __m256i state[kVectors];
  for (int k = 0; k < kVectors; ++k) {
    state[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * k));
  }
  uint8_t* p = pos;
  int64_t t = steps;
  for (; t > 0 && p - lo >= 2 * kRansLanes; --t) {
    const uint8_t* s = sym + (t - 1) * kRansLanes;
    for (int k = kVectors - 1; k >= 0; --k) {
      const __m256i idx =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + 8 * k)));
      const __m256i rcp = _mm256_i32gather_epi32(rcpBase, idx, 4);
      const __m256i biasCmpl = _mm256_i32gather_epi32(biasCmplBase, idx, 4);
      const __m256i bias = _mm256_and_si256(biasCmpl, low16);
      const __m256i cmpl = _mm256_srli_epi32(biasCmpl, 16);
      const __m256i freq = _mm256_sub_epi32(total, cmpl);
      const __m256i xmax = _mm256_sll_epi32(freq, xmaxShift);
      // shift = ceil(log2 freq) - 1, or 0 for freq 1: the exponent of float(freq - 1).
      const __m256i exponent = _mm256_srli_epi32(
          _mm256_castps_si256(_mm256_cvtepi32_ps(_mm256_sub_epi32(freq, one))), 23);
      const __m256i shift = _mm256_max_epi32(_mm256_sub_epi32(exponent, exponentBias), zero);

      // Lanes at or above xmax give up their low 16 bits, stored in lane order below p.
      __m256i v = state[k];
      const __m256i emit = _mm256_cmpgt_epi32(v, _mm256_sub_epi32(xmax, one));
      const uint32_t m = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(emit)));
      const __m128i words =
          _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, halves), 0x08));
      const __m128i packed = _mm_shuffle_epi8(
          words, _mm_loadu_si128(reinterpret_cast<const __m128i*>(kCompress.v[m])));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p - 16), packed);
      p -= 2 * _mm_popcnt_u32(m);
      v = _mm256_blendv_epi8(v, _mm256_srli_epi32(v, 16), emit);

      // q = mulhi32(v, rcp) >> shift; v += bias + q * cmpl.
      const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(v, rcp), 32);
      const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(rcp, 32));
      const __m256i q = _mm256_srlv_epi32(_mm256_blend_epi32(even, odd, 0xaa), shift);
      state[k] = _mm256_add_epi32(_mm256_add_epi32(v, bias), _mm256_mullo_epi32(q, cmpl));
    }
  }
  for (int k = 0; k < kVectors; ++k) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8 * k), state[k]);
  }
  pos = p;
  return t;
}

#endif

bool encodeSteps(const uint8_t* sym, int64_t steps, const RansEncodeTable& table, uint32_t* x,
                 uint8_t*& pos, const uint8_t* lo) {
#ifdef CDL_RANS_AVX2
  if (cpuHasAvx2()) steps = encodeStepsAvx2(sym, steps, table, x, pos, lo);
#endif
  return encodeStepsScalar(sym, steps, table.sym, x, pos, lo);
}

}  // namespace

int64_t encodeBlock(const uint8_t* sym, int64_t m, const RansEncodeTable& table, uint8_t* block,
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
    if (!putSymbolChecked(x[l], table.sym[last[l]], p, lo)) return -1;
  }
  if (!encodeSteps(sym, steps, table, x, p, lo)) return -1;

  for (int l = 0; l < kRansLanes; ++l) storeLE<uint32_t>(block + 4 * l, x[l]);
  const size_t wordBytes = static_cast<size_t>(hi - p);
  std::memmove(lo, p, wordBytes);
  return static_cast<int64_t>(kRansStateBytes + wordBytes);
}

}  // namespace cdl::kernels::detail
