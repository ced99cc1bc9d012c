#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace cdl::kernels {

// Note [Interleaved rANS stream]
// An order-0 coder for byte symbols (alphabets up to 256). All integers are little-endian.
//
//   u8  mode          0 = packed (raw fallback), 1 = rans, 2 = constant
//   u8  arg           packed: bit width 1..8; rans: probBits 1..15; constant: the symbol
//   u8  logBlock      rans: log2 of symbols per block (8..30); otherwise 0
//   u8  alphabetM1    rans: alphabet size - 1; otherwise 0
//   packed:   packedBytes(n, width) bytes of packBits output (its padding bits zero)
//   rans:     u16 freq[alphabet] (summing to 2^probBits), u32 blockBytes[nblocks], then the blocks
//   constant: nothing more
//
// n is not stored: the caller knows it, and nblocks = ceil(n / 2^logBlock). Symbols absent from a
// rans stream have freq 0; every symbol is below alphabet. ransEncode writes n == 0 as constant
// symbol 0, uses packed with the smallest width that holds the largest symbol, and rans only when
// it is smaller than that.
//
// A rans block codes up to 2^logBlock consecutive symbols with kRansLanes = 32 interleaved states:
// symbol j of the block belongs to lane j % 32, and "step" t covers symbols 32t .. 32t+31. States
// are 32-bit and live in [2^15, 2^31); renormalization moves 16-bit words. A block is
//   u32 state[32]   the decoder's initial states (the encoder's final ones)
//   u16 words[]     in the order the decoder reads them: step by step, lane 0 to 31 within a step,
//                   each lane taking one word after decoding its symbol when its state fell below
//                   2^15.
// The decoder must consume every word and end with every state equal to 2^15; anything else is a
// corrupt stream. Because within a step the lanes read in lane order, a 32-thread warp can encode
// or decode a block with one ballot and prefix count per step and produce exactly these bytes;
// blocks are independent, so a GPU may pick a smaller logBlock for parallelism and the CPU coder
// still reads its output. Each block costs 132 bytes besides its words (the table entry and the
// states), so at 2^8 symbols a block the states alone add 4 bits a symbol; the CPU default of 2^18
// adds 0.004.
constexpr int kRansLanes = 32;

struct RansOptions {
  // Frequency table precision, 1..15. Raised to ceil(log2(distinct symbols)) when that is larger,
  // so every symbol that occurs gets a frequency of at least 1.
  int probBits = 12;
  int logBlock = 18;  // log2 of symbols per block, 8..30
};

// Upper bound on ransEncode's output for n symbols: 4 + n, the header and 8-bit packing, whatever
// the options (which are still checked).
size_t ransMaxEncodedBytes(int64_t n, const RansOptions& opt = {});

// Encodes sym[0..n) into out (capacity bytes, at least ransMaxEncodedBytes(n, opt), else it
// throws) and returns the number of bytes written. Picks constant mode when one symbol value
// occurs, and packed mode when rans would not be smaller (judged first from the size the frequency
// model predicts, then from the real size). `counts` may pass histogram(sym, n) already computed
// (else nullptr); counts that do not add up to n throw.
size_t ransEncode(const uint8_t* sym, int64_t n, uint8_t* out, size_t capacity,
                  const RansOptions& opt = {}, const uint64_t* counts = nullptr);

// Decodes exactly n symbols from in[0..len) into sym. Every decoded symbol is < maxAlphabet
// (1..256). Throws cdl::Error on any inconsistency (bad mode or table, sizes that do not add up,
// words left over or missing, wrong final states, symbols out of range); never reads or writes
// outside in[0..len) and sym[0..n).
void ransDecode(const uint8_t* in, size_t len, int64_t n, uint8_t* sym, int maxAlphabet = 256);

// Receives symbols [first, first + count) of a stream; sym is valid only during the call.
using SymbolSink = std::function<void(const uint8_t* sym, int64_t first, int64_t count)>;

// Decodes the same stream as ransDecode, with the same checks, but hands the symbols to `sink`
// in order, in pieces of at most one block (2^logBlock symbols; 2^16 for packed and constant
// streams), so a caller can consume n symbols holding only one piece. The block table and sizes
// are checked before the first piece; a corrupt block throws when it is reached.
void ransDecodeChunks(const uint8_t* in, size_t len, int64_t n, int maxAlphabet,
                      const SymbolSink& sink);

}  // namespace cdl::kernels
