#include <algorithm>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(CDL_NO_TARGET_CLONES)
#include <immintrin.h>
#define CDL_RANS_AVX2 1
#endif

#include "kernels/base/cpu_dispatch.h"
#include "kernels/base/error.h"
#include "kernels/rans_table.h"

namespace cdl::kernels::detail {

void buildDecodeTable(const uint16_t* freq, int alphabet, int probBits, RansDecodeTable* t) {
  const size_t total = size_t{1} << probBits;
  bool packed = probBits <= kPackedProbBits;
  for (int s = 0; s < alphabet; ++s) packed = packed && freq[s] < (1u << kPackedProbBits);
  t->probBits = probBits;
  t->entry.resize(total);
  t->sym.resize(total);
  t->packed.resize(packed ? total : 0);
  size_t cum = 0;
  for (int s = 0; s < alphabet; ++s) {
    const uint32_t f = freq[s];
    for (uint32_t k = 0; k < f; ++k) {
      t->entry[cum + k] = f << 16 | k;
      t->sym[cum + k] = static_cast<uint8_t>(s);
      if (packed) t->packed[cum + k] = static_cast<uint32_t>(s) | k << 8 | f << 20;
    }
    cum += f;
  }
}

namespace {

// Decodes one lane. Reads the word at w whether or not the lane takes it.
inline void getSymbol(uint32_t& x, const uint32_t* entry, const uint8_t* symOf, uint32_t mask,
                      int probBits, const uint8_t*& w, uint8_t& out) {
  uint32_t s = x;
  const uint32_t slot = s & mask;
  const uint32_t e = entry[slot];
  const uint8_t v = symOf[slot];
  const uint32_t word = loadLE<uint16_t>(w);
  s = (e >> 16) * (s >> probBits) + (e & 0xffffu);
  const uint32_t take = s < kRansLow ? 1 : 0;
  w += 2 * take;
  x = (s << (kRansWordBits * take)) | (word & (0u - take));
  out = v;
}

// Decodes lanes [0, lanes) of one step; w[0 .. 2 * lanes) must be readable.
inline void decodeStep(uint32_t* x, int lanes, const uint32_t* entry, const uint8_t* symOf,
                       int probBits, const uint8_t*& w, uint8_t* out) {
  const uint32_t mask = (1u << probBits) - 1;
  for (int l = 0; l < lanes; ++l) getSymbol(x[l], entry, symOf, mask, probBits, w, out[l]);
}

// Decodes the full steps [0, steps) while at least one step's worth of words is ahead of w;
// returns the number of steps done.
CDL_TARGET_CLONES int64_t decodeStepsScalar(uint32_t* x, int64_t steps, const uint32_t* entry,
                                            const uint8_t* symOf, int probBits, const uint8_t*& pos,
                                            const uint8_t* end, uint8_t* out) {
  const uint32_t mask = (1u << probBits) - 1;
  const uint8_t* w = pos;
  int64_t t = 0;
  for (; t < steps && end - w >= 2 * kRansLanes; ++t) {
    uint8_t* o = out + t * kRansLanes;
#pragma GCC unroll 32
    for (int l = 0; l < kRansLanes; ++l) getSymbol(x[l], entry, symOf, mask, probBits, w, o[l]);
  }
  pos = w;
  return t;
}

#ifdef CDL_RANS_AVX2

// For each 8-bit mask of lanes that take a word, byte i holds the index among the loaded words of
// the one lane i takes: the number of taking lanes below it.
struct ExpandTable {
  uint8_t v[256][8] = {};
  constexpr ExpandTable() {
    for (int m = 0; m < 256; ++m) {
      uint8_t below = 0;
      for (int i = 0; i < 8; ++i) {
        if ((m >> i) & 1) v[m][i] = below++;
      }
    }
  }
};
constexpr ExpandTable kExpand;

// Decodes lanes 8k .. 8k+7 of one step from the packed slot table and returns their symbols, one
// per 32-bit lane.
__attribute__((target("avx2,popcnt"))) inline __m256i decodeVector(__m256i& state,
                                                                   const int* packed, __m256i mask,
                                                                   __m128i shift,
                                                                   const uint8_t*& w) {
  const __m256i e = _mm256_i32gather_epi32(packed, _mm256_and_si256(state, mask), 4);
  // freq * (x >> probBits) + (slot - cumfreq)
  const __m256i s =
      _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(e, 20), _mm256_srl_epi32(state, shift)),
                       _mm256_and_si256(_mm256_srli_epi32(e, 8), _mm256_set1_epi32(0xfff)));
  // Lanes below 2^15 take the next words in lane order.
  const __m256i take = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(kRansLow)), s);
  const uint32_t m = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(take)));
  const __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  const __m256i idx =
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kExpand.v[m])));
  const __m256i refilled =
      _mm256_or_si256(_mm256_slli_epi32(s, 16), _mm256_permutevar8x32_epi32(words, idx));
  state = _mm256_blendv_epi8(s, refilled, take);
  w += 2 * _mm_popcnt_u32(m);
  return _mm256_and_si256(e, _mm256_set1_epi32(0xff));
}

// The same steps as decodeStepsScalar, eight lanes to a vector.
__attribute__((target("avx2,popcnt"))) int64_t decodeStepsAvx2(uint32_t* x, int64_t steps,
                                                               const uint32_t* packed, int probBits,
                                                               const uint8_t*& pos,
                                                               const uint8_t* end, uint8_t* out) {
  const __m256i mask = _mm256_set1_epi32(static_cast<int>((1u << probBits) - 1));
  const __m128i shift = _mm_cvtsi32_si128(probBits);
  const int* base = reinterpret_cast<const int*>(packed);
  static_assert(kRansLanes == 32, "four vectors of eight lanes");
  __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8));
  __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16));
  __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 24));
  const uint8_t* w = pos;
  int64_t t = 0;
  for (; t < steps && end - w >= 2 * kRansLanes; ++t) {
    const __m256i s0 = decodeVector(x0, base, mask, shift, w);
    const __m256i s1 = decodeVector(x1, base, mask, shift, w);
    const __m256i s01 = _mm256_packus_epi32(s0, s1);
    const __m256i s2 = decodeVector(x2, base, mask, shift, w);
    const __m256i s3 = decodeVector(x3, base, mask, shift, w);
    // The packs interleave the 128-bit halves; the permutation puts the four-byte groups back in
    // lane order.
    const __m256i bytes = _mm256_packus_epi16(s01, _mm256_packus_epi32(s2, s3));
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(out + t * kRansLanes),
        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(x), x0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8), x1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 16), x2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 24), x3);
  pos = w;
  return t;
}

#endif

int64_t decodeSteps(uint32_t* x, int64_t steps, const RansDecodeTable& table, const uint8_t*& pos,
                    const uint8_t* end, uint8_t* out) {
#ifdef CDL_RANS_AVX2
  if (!table.packed.empty() && cpuHasAvx2()) {
    return decodeStepsAvx2(x, steps, table.packed.data(), table.probBits, pos, end, out);
  }
#endif
  return decodeStepsScalar(x, steps, table.entry.data(), table.sym.data(), table.probBits, pos, end,
                           out);
}

}  // namespace

void decodeBlock(const uint8_t* block, size_t bytes, int64_t m, const RansDecodeTable& table,
                 uint8_t* out, int64_t index) {
  uint32_t x[kRansLanes];
  for (int l = 0; l < kRansLanes; ++l) {
    x[l] = loadLE<uint32_t>(block + 4 * l);
    CDL_CHECK(x[l] >= kRansLow && x[l] < (kRansLow << kRansWordBits), "rans block ", index,
              ": initial state ", x[l], " of lane ", l, " is outside [2^15, 2^31)");
  }
  const uint32_t* entry = table.entry.data();
  const uint8_t* symOf = table.sym.data();
  const int probBits = table.probBits;
  const uint8_t* w = block + kRansStateBytes;
  const uint8_t* end = block + bytes;
  const int64_t steps = m / kRansLanes;
  const int rest = static_cast<int>(m % kRansLanes);
  int64_t t = decodeSteps(x, steps, table, w, end, out);

  // Once fewer than 32 words are left, go on from a zero-padded copy of them that a step may
  // over-read, and stop as soon as the stream has run short.
  uint8_t tail[4 * kRansLanes] = {};
  if (end - w >= 2 * kRansLanes) {
    decodeStep(x, rest, entry, symOf, probBits, w, out + steps * kRansLanes);
  } else {
    const size_t tailBytes = static_cast<size_t>(end - w);
    std::memcpy(tail, w, tailBytes);
    w = tail;
    end = tail + tailBytes;
    for (; t <= steps; ++t) {
      CDL_CHECK(w <= end, "rans block ", index, ": words run out before step ", t, " of ",
                steps + (rest > 0 ? 1 : 0));
      decodeStep(x, t < steps ? kRansLanes : rest, entry, symOf, probBits, w, out + t * kRansLanes);
    }
  }
  CDL_CHECK(w <= end, "rans block ", index, ": words run out in the last step");
  CDL_CHECK(w == end, "rans block ", index, ": ", (end - w) / 2, " words left over");
  for (int l = 0; l < kRansLanes; ++l) {
    CDL_CHECK(x[l] == kRansLow, "rans block ", index, ": final state of lane ", l, " is ", x[l],
              ", expected 2^15");
  }
}

}  // namespace cdl::kernels::detail
