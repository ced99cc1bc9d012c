#include "kernels/row_multiset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/base/bytes.h"
#include "kernels/base/error.h"
#include "kernels/histogram.h"
#include "kernels/rans_table.h"

namespace cdl::kernels {
namespace {

constexpr uint8_t kFormatOrdered = 0x10;
constexpr uint8_t kFormatMultiset = 0x11;
constexpr size_t kHeaderBytes = 3;
constexpr size_t kStateBytes = 8;
constexpr uint64_t kStateLow = uint64_t{1} << 48;  // states live in [2^48, 2^64)
constexpr int kModelBits = 12;
constexpr int kMaxModelBits = 15;
constexpr uint32_t kBinomialBits = 16;
// Binomial weights below this fraction of the mode's count as 0 (frequency 1).
constexpr double kTinyWeight = 1.0 / 1152921504606846976.0;  // 2^-60

// One step for the encoder: a binomial value (its start and freq >= 1 in a table of 2^16), or
// with freq == 0 the symbols at[0..len) with the model.
struct Event {
  uint32_t start, freq;
  const uint8_t* at;
  int64_t len;
};

// The order-0 symbol model (Note [Row multiset stream]).
struct Model {
  int bits = 0;
  int alphabet = 0;
  uint32_t freq[256] = {};
  uint32_t start[256] = {};
  std::vector<int> present;      // the symbols of nonzero frequency, increasing
  std::vector<uint32_t> massAt;  // massAt[i] = freq of present[0..i)
  std::vector<uint8_t> slotSym;  // decoder only: the symbol of each slot of 2^bits
  double orderedBits = 0;        // encoder only: sum of log2(2^bits / freq) over the symbols
};

// A trie node: rows [begin, begin + count) of the sorted matrix share their first depth columns.
struct Node {
  int64_t begin, count, depth;
};

int64_t checkShape(int64_t rows, int64_t cols, int alphabet) {
  CDL_CHECK(rows >= 0 && cols >= 0, "row multiset: negative shape ", rows, " x ", cols);
  CDL_CHECK(alphabet >= 1 && alphabet <= 256, "row multiset: alphabet = ", alphabet,
            ", must be in 1..256");
  CDL_CHECK(cols == 0 || rows <= std::numeric_limits<int64_t>::max() / 4 / cols,
            "row multiset: shape ", rows, " x ", cols, " is too large");
  return rows * cols;
}

void finishModel(Model* m) {
  uint32_t c = 0;
  m->massAt.assign(1, 0);
  for (int s = 0; s < m->alphabet; ++s) {
    m->start[s] = c;
    c += m->freq[s];
    if (m->freq[s] == 0) continue;
    m->present.push_back(s);
    m->massAt.push_back(c);
  }
}

// The split of present symbols [a, b) (b - a >= 2) whose left part has the mass closest to half,
// the first of equals.
int splitPoint(const Model& m, int a, int b) {
  const auto off = [&](int i) {
    return std::llabs(2 * int64_t{m.massAt[i]} - m.massAt[a] - m.massAt[b]);
  };
  int best = a + 1;
  for (int i = a + 2; i < b; ++i) {
    if (off(i) < off(best)) best = i;
  }
  return best;
}

// Quantized pmf of Binomial(c, f / total) over 0..c with total 2^16: values outside [lo_, hi_]
// have frequency 1 and cum_[k - lo_] is the start of k in [lo_, hi_ + 1]. Weights come from the
// mode outwards with only +, -, *, / in double, so the table is the same on every IEEE-754 machine.
class BinomialTable {
 public:
  void build(int64_t c, uint32_t f, uint32_t total);
  uint32_t start(int64_t k) const {
    if (k < lo_) return static_cast<uint32_t>(k);
    if (k <= hi_) return cum_[k - lo_];
    return cum_.back() + static_cast<uint32_t>(k - hi_ - 1);
  }
  uint32_t freq(int64_t k) const {
    return k < lo_ || k > hi_ ? 1 : cum_[k - lo_ + 1] - cum_[k - lo_];
  }
  int64_t valueAt(uint32_t slot) const {
    if (slot < cum_.front()) return slot;
    if (slot >= cum_.back()) return hi_ + 1 + (slot - cum_.back());
    return lo_ - 1 + (std::upper_bound(cum_.begin(), cum_.end(), slot) - cum_.begin());
  }

 private:
  void weigh(int64_t c, uint32_t f, uint32_t total, int64_t mode);
  int64_t lo_ = 0, hi_ = 0;
  std::vector<double> w_;
  std::vector<uint32_t> cum_;
};

// Fills w_ with the weights of lo_..hi_ relative to the mode's.
void BinomialTable::weigh(int64_t c, uint32_t f, uint32_t total, int64_t mode) {
  const double r = static_cast<double>(f) / static_cast<double>(total - f);  // p / (1 - p)
  const double rinv = static_cast<double>(total - f) / static_cast<double>(f);
  w_.clear();
  double w = 1.0;
  for (int64_t k = mode; k > 0; --k) {
    w = w * static_cast<double>(k) / static_cast<double>(c - k + 1) * rinv;
    if (w < kTinyWeight) break;
    w_.push_back(w);
  }
  lo_ = mode - static_cast<int64_t>(w_.size());
  std::reverse(w_.begin(), w_.end());
  w_.push_back(1.0);
  w = 1.0;
  for (int64_t k = mode; k < c; ++k) {
    w = w * static_cast<double>(c - k) / static_cast<double>(k + 1) * r;
    if (w < kTinyWeight) break;
    w_.push_back(w);
  }
  hi_ = lo_ + static_cast<int64_t>(w_.size()) - 1;
}

void BinomialTable::build(int64_t c, uint32_t f, uint32_t total) {
  CDL_CHECK(c >= 1 && c <= kRowMultisetMaxRows && f >= 1 && f < total,
            "row multiset: no binomial table for c = ", c, ", p = ", f, "/", total);
  const double p = static_cast<double>(f) / static_cast<double>(total);
  const int64_t mode = std::min(c, static_cast<int64_t>(static_cast<double>(c + 1) * p));
  weigh(c, f, total, mode);
  double sum = 0.0;
  for (const double w : w_) sum += w;
  // Every value gets 1; the rest of 2^16 goes by weight, its rounding remainder to the mode.
  const int64_t budget = (int64_t{1} << kBinomialBits) - (c + 1);
  const double scale = static_cast<double>(budget) / sum;
  cum_.resize(w_.size() + 1);
  cum_[0] = static_cast<uint32_t>(lo_);
  int64_t used = 0;
  for (size_t i = 0; i < w_.size(); ++i) {
    const int64_t extra = static_cast<int64_t>(w_[i] * scale);
    used += extra;
    cum_[i + 1] = cum_[i] + 1 + static_cast<uint32_t>(extra);
  }
  const size_t at = static_cast<size_t>(mode - lo_);
  const int64_t fix = budget - used;
  CDL_CHECK(int64_t{cum_[at + 1]} - cum_[at] + fix >= 1, "row multiset: binomial rounding failed");
  for (size_t i = at + 1; i < cum_.size(); ++i) cum_[i] = static_cast<uint32_t>(cum_[i] + fix);
}

// Visits the trie of counts depth first (Note [Row multiset stream]): rest(nd) codes the columns
// of a node of one row, counts(nd, n) the child counts n[0..alphabet) (zero on entry) of a node of
// several rows.
template <typename Rest, typename Counts>
void walkTrie(int64_t rows, int64_t cols, int alphabet, Rest rest, Counts counts) {
  std::vector<Node> stack;
  if (rows > 0) stack.push_back({0, rows, 0});
  int64_t n[256];
  while (!stack.empty()) {
    const Node nd = stack.back();
    stack.pop_back();
    if (nd.depth == cols) continue;
    if (nd.count == 1) {
      rest(nd);
      continue;
    }
    std::fill(n, n + 256, 0);
    counts(nd, n);
    int64_t end = nd.begin + nd.count;
    for (int s = alphabet - 1; s >= 0; --s) {  // pushed so that symbol 0's child is popped first
      if (n[s] == 0) continue;
      end -= n[s];
      stack.push_back({end, n[s], nd.depth + 1});
    }
  }
}

// --- encoder ---------------------------------------------------------------------------------

Model buildModel(const uint8_t* sym, int64_t n, int64_t cols, int alphabet) {
  uint64_t counts[256];
  histogram(sym, n, counts);
  for (int s = alphabet; s < 256; ++s) {
    if (counts[s] == 0) continue;
    const int64_t at = std::find(sym, sym + n, static_cast<uint8_t>(s)) - sym;
    CDL_THROW("row multiset: symbol ", s, " at row ", at / cols, ", column ", at % cols,
              " is not below alphabet ", alphabet);
  }
  if (n == 0) counts[0] = 1;  // an empty matrix still gets a valid table
  Model m;
  m.alphabet = alphabet;
  m.bits = kModelBits;  // enough for all 256 symbols, so never raised
  uint16_t freq[256];
  detail::normalizeFrequencies(counts, alphabet, m.bits, freq);
  for (int s = 0; s < alphabet; ++s) m.freq[s] = freq[s];
  m.orderedBits = n == 0 ? 0.0 : detail::modelBits(counts, freq, alphabet, m.bits);
  finishModel(&m);
  return m;
}

// Records the c rows' split between present symbols [a, mid) and [mid, b), then each part's.
// countAt[i] is the count of present[0..i).
void recordCounts(const Model& m, const int64_t* countAt, int a, int b, int64_t c, BinomialTable* t,
                  std::vector<Event>* ev) {
  if (c == 0 || b - a < 2) return;
  const int mid = splitPoint(m, a, b);
  const int64_t left = countAt[mid] - countAt[a];
  t->build(c, m.massAt[mid] - m.massAt[a], m.massAt[b] - m.massAt[a]);
  ev->push_back({t->start(left), t->freq(left), nullptr, 0});
  recordCounts(m, countAt, a, mid, left, t, ev);
  recordCounts(m, countAt, mid, b, c - left, t, ev);
}

// Records the trie of counts of the sorted matrix (Note [Row multiset stream]).
void recordMultiset(const uint8_t* sorted, int64_t rows, int64_t cols, const Model& m,
                    std::vector<Event>* ev) {
  BinomialTable table;
  const int k = static_cast<int>(m.present.size());
  int64_t countAt[257];
  walkTrie(
      rows, cols, m.alphabet,
      [&](const Node& nd) {
        ev->push_back({0, 0, sorted + nd.begin * cols + nd.depth, cols - nd.depth});
      },
      [&](const Node& nd, int64_t* n) {
        for (int64_t i = 0; i < nd.count; ++i) ++n[sorted[(nd.begin + i) * cols + nd.depth]];
        countAt[0] = 0;
        for (int i = 0; i < k; ++i) countAt[i + 1] = countAt[i] + n[m.present[i]];
        recordCounts(m, countAt, 0, k, nd.count, &table, ev);
      });
}

// Codes ev backwards; words come out in the order the decoder reads them. Returns the final state.
uint64_t encodeEvents(const std::vector<Event>& ev, const Model& m, std::vector<uint16_t>* words) {
  uint64_t x = kStateLow;
  words->clear();
  const auto put = [&](uint32_t start, uint32_t freq, uint32_t bits) {
    if ((x >> (64 - bits)) >= freq) {  // x >= freq * 2^(64 - bits)
      words->push_back(static_cast<uint16_t>(x));
      x >>= 16;
    }
    x = ((x / freq) << bits) + x % freq + start;
  };
  const uint32_t bits = static_cast<uint32_t>(m.bits);
  for (size_t i = ev.size(); i-- > 0;) {
    const Event& e = ev[i];
    if (e.freq > 0) put(e.start, e.freq, kBinomialBits);
    for (int64_t j = e.len; j-- > 0;) put(m.start[e.at[j]], m.freq[e.at[j]], bits);
  }
  std::reverse(words->begin(), words->end());
  return x;
}

size_t writeStream(uint8_t format, const Model& m, const std::vector<uint16_t>& words,
                   uint64_t state, uint8_t* out) {
  out[0] = format;
  out[1] = static_cast<uint8_t>(m.bits);
  out[2] = static_cast<uint8_t>(m.alphabet - 1);
  size_t pos = kHeaderBytes;
  for (int s = 0; s < m.alphabet; ++s, pos += 2) {
    storeLE<uint16_t>(out + pos, static_cast<uint16_t>(m.freq[s]));
  }
  for (const uint16_t w : words) {
    storeLE<uint16_t>(out + pos, w);
    pos += 2;
  }
  storeLE<uint64_t>(out + pos, state);
  return pos + kStateBytes;
}

// The matrix with its rows sorted lexicographically.
std::vector<uint8_t> sortRows(const uint8_t* sym, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return {};
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) order[r] = r;
  const size_t bytes = static_cast<size_t>(cols);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return std::memcmp(sym + a * cols, sym + b * cols, bytes) < 0;
  });
  std::vector<uint8_t> sorted(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) std::memcpy(&sorted[r * cols], sym + order[r] * cols, bytes);
  return sorted;
}

// --- decoder ---------------------------------------------------------------------------------

// The decoder's state and its words (Note [Row multiset stream]).
class Reader {
 public:
  Reader(const uint8_t* words, size_t count, uint64_t state)
      : words_(words), count_(count), x_(state) {
    CDL_CHECK(x_ >= kStateLow, "row multiset stream: initial state ", x_, " is below 2^48");
  }
  uint32_t slot(uint32_t bits) const { return static_cast<uint32_t>(x_ & ((1u << bits) - 1)); }
  void advance(uint32_t start, uint32_t freq, uint32_t bits) {
    x_ = freq * (x_ >> bits) + slot(bits) - start;
    if (x_ < kStateLow) {
      CDL_CHECK(pos_ < count_, "row multiset stream: the ", count_, " coded words end early");
      x_ = x_ << 16 | loadLE<uint16_t>(words_ + 2 * pos_++);
    }
  }
  void finish() const {
    CDL_CHECK(pos_ == count_, "row multiset stream: ", count_ - pos_, " of ", count_,
              " coded words left over");
    CDL_CHECK(x_ == kStateLow, "row multiset stream: final state ", x_, ", expected 2^48");
  }

 private:
  const uint8_t* words_;
  size_t count_;
  size_t pos_ = 0;
  uint64_t x_;
};

Model readModel(const uint8_t* in, size_t len, int alphabet) {
  Model m;
  m.bits = in[1];
  m.alphabet = in[2] + 1;
  CDL_CHECK(m.bits >= 1 && m.bits <= kMaxModelBits, "row multiset stream: probBits = ", m.bits,
            ", must be in 1..", kMaxModelBits);
  CDL_CHECK(m.alphabet == alphabet, "row multiset stream: alphabet of ", m.alphabet,
            " symbols, expected ", alphabet);
  CDL_CHECK(len - kHeaderBytes >= 2 * size_t(alphabet) + kStateBytes, "row multiset stream: ", len,
            " bytes cannot hold the frequency table of ", alphabet, " symbols and the state");
  uint32_t sum = 0;
  for (int s = 0; s < alphabet; ++s) {
    m.freq[s] = loadLE<uint16_t>(in + kHeaderBytes + 2 * s);
    sum += m.freq[s];
  }
  CDL_CHECK(sum == (1u << m.bits), "row multiset stream: frequencies sum to ", sum, ", not 2^",
            m.bits);
  finishModel(&m);
  m.slotSym.resize(size_t{1} << m.bits);
  for (int s = 0; s < alphabet; ++s) {
    std::fill_n(m.slotSym.begin() + m.start[s], m.freq[s], static_cast<uint8_t>(s));
  }
  return m;
}

void decodeSymbols(Reader* rd, const Model& m, uint8_t* out, int64_t n) {
  const uint32_t bits = static_cast<uint32_t>(m.bits);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t s = m.slotSym[rd->slot(bits)];
    rd->advance(m.start[s], m.freq[s], bits);
    out[i] = s;
  }
}

// Decodes how the c rows split over present symbols [a, b) into n (zero on entry).
void decodeCounts(Reader* rd, const Model& m, int a, int b, int64_t c, BinomialTable* t,
                  int64_t* n) {
  if (c == 0) return;
  if (b - a == 1) {
    n[m.present[a]] = c;
    return;
  }
  const int mid = splitPoint(m, a, b);
  t->build(c, m.massAt[mid] - m.massAt[a], m.massAt[b] - m.massAt[a]);
  const int64_t left = t->valueAt(rd->slot(kBinomialBits));
  CDL_CHECK(left >= 0 && left <= c, "row multiset stream: count ", left, " is not in 0..", c);
  rd->advance(t->start(left), t->freq(left), kBinomialBits);
  decodeCounts(rd, m, a, mid, left, t, n);
  decodeCounts(rd, m, mid, b, c - left, t, n);
}

void decodeMultiset(Reader* rd, const Model& m, int64_t rows, int64_t cols, uint8_t* sym) {
  BinomialTable table;
  walkTrie(
      rows, cols, m.alphabet,
      [&](const Node& nd) {
        decodeSymbols(rd, m, sym + nd.begin * cols + nd.depth, cols - nd.depth);
      },
      [&](const Node& nd, int64_t* n) {
        decodeCounts(rd, m, 0, static_cast<int>(m.present.size()), nd.count, &table, n);
        uint8_t* at = sym + nd.begin * cols + nd.depth;
        for (int s = 0; s < m.alphabet; ++s) {
          for (int64_t j = 0; j < n[s]; ++j, at += cols) *at = static_cast<uint8_t>(s);
        }
      });
}

}  // namespace

size_t rowMultisetMaxEncodedBytes(int64_t rows, int64_t cols, int alphabet) {
  const int64_t n = checkShape(rows, cols, alphabet);
  return kHeaderBytes + 2 * static_cast<size_t>(alphabet) + kStateBytes +
         2 * static_cast<size_t>(n);
}

size_t rowMultisetEncode(const uint8_t* sym, int64_t rows, int64_t cols, int alphabet, bool ordered,
                         uint8_t* out, size_t capacity) {
  const size_t bound = rowMultisetMaxEncodedBytes(rows, cols, alphabet);
  const int64_t n = rows * cols;
  CDL_CHECK(sym != nullptr || n == 0, "row multiset: null symbols for ", rows, " x ", cols);
  CDL_CHECK(out != nullptr && capacity >= bound, "row multiset: capacity of ", capacity,
            " bytes is below the bound of ", bound);
  CDL_CHECK(ordered || rows <= kRowMultisetMaxRows, "row multiset: ", rows,
            " rows exceed the multiset limit of ", kRowMultisetMaxRows, "; code them in order");
  const Model m = buildModel(sym, n, cols, alphabet);
  std::vector<uint16_t> words;
  if (ordered) {
    const uint64_t state = encodeEvents({{0, 0, sym, n}}, m, &words);
    return writeStream(kFormatOrdered, m, words, state, out);
  }
  const std::vector<uint8_t> sorted = sortRows(sym, rows, cols);
  std::vector<Event> ev;
  recordMultiset(sorted.data(), rows, cols, m, &ev);
  const uint64_t state = encodeEvents(ev, m, &words);
  // The rows in order take at least orderedBits - 16 bits of words (the state keeps <= 16), so
  // they are only tried when the multiset is not clearly smaller.
  if (16.0 * static_cast<double>(words.size()) > m.orderedBits - 1024) {
    std::vector<uint16_t> inOrder;
    const uint64_t inOrderState = encodeEvents({{0, 0, sorted.data(), n}}, m, &inOrder);
    if (inOrder.size() < words.size()) {
      return writeStream(kFormatOrdered, m, inOrder, inOrderState, out);
    }
  }
  return writeStream(kFormatMultiset, m, words, state, out);
}

void rowMultisetDecode(const uint8_t* in, size_t len, int64_t rows, int64_t cols, int alphabet,
                       uint8_t* sym) {
  const int64_t n = checkShape(rows, cols, alphabet);
  CDL_CHECK(sym != nullptr || n == 0, "row multiset: null output for ", rows, " x ", cols);
  CDL_CHECK(in != nullptr && len >= kHeaderBytes, "row multiset stream: ", len,
            " bytes cannot hold the header");
  const uint8_t format = in[0];
  CDL_CHECK(format == kFormatOrdered || format == kFormatMultiset,
            "row multiset stream: format byte ", int(format), ", expected 16 (ordered) or 17");
  CDL_CHECK(format == kFormatOrdered || rows <= kRowMultisetMaxRows, "row multiset stream: ", rows,
            " rows exceed the multiset limit of ", kRowMultisetMaxRows);
  const Model m = readModel(in, len, alphabet);
  const size_t wordsAt = kHeaderBytes + 2 * static_cast<size_t>(alphabet);
  const size_t wordBytes = len - wordsAt - kStateBytes;
  CDL_CHECK(wordBytes % 2 == 0, "row multiset stream: ", wordBytes,
            " bytes of coded words are not whole 16-bit words");
  Reader rd(in + wordsAt, wordBytes / 2, loadLE<uint64_t>(in + len - kStateBytes));
  if (format == kFormatOrdered) {
    decodeSymbols(&rd, m, sym, n);
  } else {
    decodeMultiset(&rd, m, rows, cols, sym);
  }
  rd.finish();
}

double rowPermutationBits(const uint8_t* sym, int64_t rows, int64_t cols) {
  checkShape(rows, cols, 1);
  CDL_CHECK(sym != nullptr || rows * cols == 0, "row multiset: null symbols for ", rows, " x ",
            cols);
  if (rows * cols == 0) return 0.0;  // no rows, or rows that are all the same
  const std::vector<uint8_t> sorted = sortRows(sym, rows, cols);
  const size_t bytes = static_cast<size_t>(cols);
  double nats = std::lgamma(static_cast<double>(rows) + 1.0);
  for (int64_t r = 0, m = 1; r < rows; r += m, m = 1) {
    while (r + m < rows && std::memcmp(&sorted[r * cols], &sorted[(r + m) * cols], bytes) == 0) {
      ++m;
    }
    nats -= std::lgamma(static_cast<double>(m) + 1.0);
  }
  return nats / std::log(2.0);
}

}  // namespace cdl::kernels
