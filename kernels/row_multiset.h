#pragma once

#include <cstddef>
#include <cstdint>

namespace cdl::kernels {

// Note [Row multiset stream]
// A fully connected layer does not change when its hidden units are permuted, so the order of the
// rows of its weight matrix is information a model file need not hold (Basu & Varshney, universal
// lossless coding of DNNs). This codes a row-major matrix of byte symbols (rows x cols, each below
// alphabet) either with its rows in order or as the multiset of its rows, which decodes to the rows
// sorted lexicographically (as unsigned bytes, column 0 most significant) and saves close to
// log2(rows! / prod_j m_j!) bits, m_j the multiplicities of identical rows. All integers are
// little-endian.
//
//   u8  format       0x10 = rows in order, 0x11 = multiset (high nibble: version 1)
//   u8  probBits     1..15: precision of the symbol model (the encoder uses 12)
//   u8  alphabetM1   alphabet - 1; must match the decoder's alphabet
//   u16 freq[alphabet]   order-0 symbol model, summing to 2^probBits
//   u16 words[]      in the order the decoder reads them
//   u64 state        the decoder's initial state (the encoder's final one)
//
// rows and cols are not stored. One rANS state lives in [2^48, 2^64): decoding a value of
// frequency f at cumulative start c in a table of total 2^b (b <= 16) maps x to
// f * (x >> b) + (x & (2^b - 1)) - c, then reads one word (x = x << 16 | word) when x fell below
// 2^48. The decoder must consume every word and end in state 2^48. (A 32-bit state in [2^16, 2^32)
// would leave x >> 16 as small as 1 for the 16-bit binomial tables, and its rounding moved the
// saving measured in the tests by 2 to 8 percent; here x >> b >= 2^32.)
//
// Ordered (0x10): the rows*cols symbols in row-major order, each coded with the model.
// Multiset (0x11): the trie of counts of the sorted rows, visited depth first (a stack, children
// in increasing symbol order). A node holds the c rows that share their first d columns (the root:
// all rows, d = 0). At d == cols they are c identical rows and nothing is coded; a node with c == 1
// codes its columns d..cols-1 with the model; otherwise its child counts n_s (the rows whose
// column d is s) follow as a tree of binomials over the symbols of nonzero frequency, in
// increasing order: a run [a, b) of them holding c' rows (at first all of them and c) splits at
// the mid whose left part's frequency F_left is closest to half the run's F, the first of equals;
// n_left ~ Binomial(c', F_left / F) is coded, then the left run, then the right one. Runs of one
// symbol or with no rows code nothing. The product of these binomials is the multinomial of the
// node, so the multiset's probability is exactly rows! / prod_j m_j! times the rows'. (A chain
// n_s ~ Binomial(c_rest, f_s / F_rest) over the symbols has the same product, but asks for events
// like "all c identical rows take symbol 0" of probability 16^-c, which 16-bit tables cannot
// hold: with rows used up to 4 times it put the measured saving 6 percent off the bound.)
// A binomial table has total 2^16: each value 0..c' gets 1, the rest of 2^16 - (c' + 1) goes by
// weight (rounded down, the remainder to the mode k* = floor((c' + 1) p)), with weights built
// from the mode outwards using only +, -, *, / in double from the integer frequencies, and those
// below 2^-60 of the mode's taken as 0; every IEEE-754 machine builds the same table. That needs
// c' + 1 <= 2^15: multiset coding takes at most kRowMultisetMaxRows rows. The encoder writes the
// rows in order instead (format 0x10, the rows sorted) when that is smaller.
constexpr int64_t kRowMultisetMaxRows = (int64_t{1} << 15) - 1;

// Upper bound on rowMultisetEncode's output: 11 + 2 * alphabet + 2 * rows * cols bytes (rows in
// order take at most one word a symbol, and a multiset stream is never larger than the sorted rows
// in order). Throws on negative sizes or an alphabet outside 1..256.
size_t rowMultisetMaxEncodedBytes(int64_t rows, int64_t cols, int alphabet);

// Encodes the rows of sym (row-major rows x cols, every symbol < alphabet) into out (capacity
// bytes, at least rowMultisetMaxEncodedBytes, else it throws) and returns the bytes written.
// ordered == false: as a multiset (at most kRowMultisetMaxRows rows, else it throws: code them in
// order instead). ordered == true: the same model and coder with the rows in the given order, the
// reference that the multiset saving is measured against.
size_t rowMultisetEncode(const uint8_t* sym, int64_t rows, int64_t cols, int alphabet, bool ordered,
                         uint8_t* out, size_t capacity);

// Decodes in[0..len) into sym (rows x cols): the rows sorted lexicographically, or in their coded
// order for an ordered stream. Throws cdl::Error on any inconsistency (format, table, counts out of
// range, words left over or missing, wrong final state); never reads outside in[0..len) nor writes
// outside sym[0..rows*cols).
void rowMultisetDecode(const uint8_t* in, size_t len, int64_t rows, int64_t cols, int alphabet,
                       uint8_t* sym);

// log2(rows! / prod_j m_j!) for the rows of sym, m_j the multiplicities of identical rows: the
// bits a multiset stream saves against the rows in order, up to the coder's rounding.
double rowPermutationBits(const uint8_t* sym, int64_t rows, int64_t cols);

}  // namespace cdl::kernels
