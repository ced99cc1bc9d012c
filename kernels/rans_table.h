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

// The stream's modes and limits (Note [Interleaved rANS stream]).
enum RansMode : uint8_t { kModePacked = 0, kModeRans = 1, kModeConstant = 2 };
constexpr size_t kStreamHeaderBytes = 4;
constexpr int kMinLogBlock = 8;
constexpr int kMaxLogBlock = 30;
constexpr int kMaxProbBits = 15;

// Blocks of 2^logBlock symbols that n symbols take.
uint64_t blockCount(int64_t n, int logBlock);

// How ransEncode codes n >= 1 symbols of histogram `hist`, decided alike by the CPU and GPU coders
// (Note [Interleaved rANS stream]): constant when one symbol value occurs; else rans when the
// frequency model predicts it smaller than the packed form (the coder still falls back to packed
// when the real size is not smaller), else packed.
struct RansPlan {
  RansMode mode = kModePacked;
  int symbol = 0;          // constant: the symbol
  int width = 0;           // packed: bits per symbol
  size_t packedBytes = 0;  // the packed stream's size, header included
  int alphabet = 0;        // rans: the table's symbols, their frequencies and precision
  int probBits = 0;
  uint16_t freq[256] = {};
};
RansPlan planRans(const uint64_t* hist, int64_t n, const RansOptions& opt);
// Writes a stream's 4-byte header (mode, its argument, and for rans logBlock and alphabet - 1).
size_t writeStreamHeader(uint8_t* out, RansMode mode, int arg, int logBlock, int alphabetM1);

// The stream checks that the CPU and GPU decoders share; each throws cdl::Error saying what is
// wrong, worded alike on both. `head` holds a stream's first bytes (at least its header, and for
// a rans stream its frequency table, or the whole stream when it is shorter); len is the stream's
// full length.
// The 4-byte header common to every mode (len >= 4); returns the mode.
int checkStreamHeader(const uint8_t* head, size_t len, int maxAlphabet);
// A rans-mode stream's header and frequency table.
struct RansHeader {
  int probBits = 0;
  int logBlock = 0;
  int alphabet = 0;
  uint16_t freq[256] = {};
  size_t tableEnd = 0;  // the block table starts here
};
RansHeader parseRansHeader(const uint8_t* head, size_t len, int maxAlphabet);
// Room for the block table of `blocks` blocks (of n symbols) after tableEnd in a stream of len
// bytes; returns the bytes that follow the table.
size_t checkBlockTableRoom(size_t len, size_t tableEnd, uint64_t blocks, int64_t n);
// The block table: `blocks` u32 sizes at table, followed by `after` bytes of blocks, which they
// must fill exactly. offsets (blocks + 1 entries, or null) receives each block's start relative
// to the first block, and the total last.
void checkBlockTable(const uint8_t* table, uint64_t blocks, size_t after, uint64_t* offsets);
// A packed stream of n symbols of `width` bits in len bytes; `last` is its last byte, whose
// padding bits must be zero.
void checkPacked(int width, size_t len, int64_t n, uint8_t last);

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
