#pragma once

// Internals of the rANS coder (kernels/rans.cc): the frequency model and the per-block coders.
// The stream layout is described in Note [Interleaved rANS stream] (kernels/rans.h).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/base/bytes.h"
#include "kernels/rans.h"

namespace cdl::kernels::detail {

constexpr uint32_t kRansLow = 1u << 15;  // states live in [kRansLow, kRansLow << 16)
constexpr int kRansWordBits = 16;
constexpr size_t kRansStateBytes = 4 * kRansLanes;

// Scales counts[0..alphabet) to freq[0..alphabet) with sum exactly 2^probBits, freq[s] >= 1 where
// counts[s] > 0 and 0 elsewhere, minimizing sum_s counts[s] * log2(2^probBits / freq[s]). The
// number of nonzero counts must be between 1 and 2^probBits.
void normalizeFrequencies(const uint64_t* counts, int alphabet, int probBits, uint16_t* freq);

// sum_s counts[s] * log2(2^probBits / freq[s]): the size in bits that a coder with these
// frequencies approaches, before the per-block states.
double modelBits(const uint64_t* counts, const uint16_t* freq, int alphabet, int probBits);

// Per-symbol encoder constants. Encoding a symbol of frequency f at cumulative frequency c maps
// state x to (x / f) * 2^probBits + x % f + c, computed as x + bias + q * cmpl with
// q = mulhi32(x, rcp) >> shift, which is exact for every x < 2^31.
struct RansEncSymbol {
  uint32_t xmax = 0;  // states >= xmax = f << (31 - probBits) first move their low 16 bits out
  uint32_t rcp = 0;
  uint32_t bias = 0;  // below 2^16
  uint16_t cmpl = 0;  // 2^probBits - f
  uint16_t shift = 0;
};

struct RansEncodeTable {
  int probBits = 0;
  RansEncSymbol sym[256];
  // The same constants as arrays for vector gathers: rcp, and bias | cmpl << 16.
  uint32_t rcp[256];
  uint32_t biasCmpl[256];
};

// Fills t from freq[0..alphabet); symbols >= alphabet get frequency 0 (never coded).
void buildEncodeTable(const uint16_t* freq, int alphabet, int probBits, RansEncodeTable* t);

// Encodes sym[0..m) (1 <= m) as one block at block[0..room): the 32 states, then the words. The
// region past the states serves as scratch for the words, which are produced last to first.
// Returns the block's size in bytes, or -1 when it would not fit in room bytes.
int64_t encodeBlock(const uint8_t* sym, int64_t m, const RansEncodeTable& t, uint8_t* block,
                    size_t room);

// Slot table of the decoder: for each slot v in [0, 2^probBits), the symbol whose range holds v,
// and entry[v] = freq << 16 | (v - cumfreq). When probBits <= kPackedProbBits and every freq is
// below 2^kPackedProbBits, packed[v] holds all three for vector gathers:
// symbol | (v - cumfreq) << 8 | freq << 20. Otherwise packed is empty.
constexpr int kPackedProbBits = 12;
struct RansDecodeTable {
  int probBits = 0;
  std::vector<uint32_t> entry;
  std::vector<uint8_t> sym;
  std::vector<uint32_t> packed;
};

// freq[0..alphabet) must sum to 2^probBits.
void buildDecodeTable(const uint16_t* freq, int alphabet, int probBits, RansDecodeTable* t);

// Decodes the m symbols of block number `index` from block[0..bytes) into out[0..m). bytes must be
// at least kRansStateBytes and even. Throws cdl::Error naming the block when its states or words
// are inconsistent; reads nothing outside block[0..bytes).
void decodeBlock(const uint8_t* block, size_t bytes, int64_t m, const RansDecodeTable& table,
                 uint8_t* out, int64_t index);

}  // namespace cdl::kernels::detail
