#include "kernels/rans.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/histogram.h"
#include "kernels/rans_table.h"

namespace cdl::kernels {
namespace {

using Mode = detail::RansMode;
constexpr Mode kPacked = detail::kModePacked, kRans = detail::kModeRans,
               kConstant = detail::kModeConstant;
constexpr size_t kHeaderBytes = detail::kStreamHeaderBytes;
using detail::kMaxLogBlock;
using detail::kMaxProbBits;
using detail::kMinLogBlock;
// Pieces in which ransDecodeChunks hands over packed and constant streams.
constexpr int64_t kChunkSymbols = int64_t{1} << 16;

void checkOptions(const RansOptions& opt) {
  CDL_CHECK(opt.probBits >= 1 && opt.probBits <= kMaxProbBits, "rans: probBits = ", opt.probBits,
            ", must be in 1..", kMaxProbBits);
  CDL_CHECK(opt.logBlock >= kMinLogBlock && opt.logBlock <= kMaxLogBlock,
            "rans: logBlock = ", opt.logBlock, ", must be in ", kMinLogBlock, "..", kMaxLogBlock);
}

using detail::blockCount;
using detail::writeStreamHeader;

// Smallest k with 2^k >= v.
int ceilLog2(uint64_t v) {
  int k = 0;
  while ((uint64_t{1} << k) < v) ++k;
  return k;
}

// Writes the rans form of sym into out when it takes at most `limit` bytes; returns its size, or 0
// when it does not fit.
size_t encodeRans(const uint8_t* sym, int64_t n, const uint16_t* freq, int alphabet, int probBits,
                  int logBlock, uint8_t* out, size_t limit) {
  const uint64_t blocks = blockCount(n, logBlock);
  const uint64_t tableEnd = kHeaderBytes + 2 * uint64_t(alphabet) + 4 * blocks;
  if (tableEnd > limit) return 0;
  size_t pos = writeStreamHeader(out, kRans, probBits, logBlock, alphabet - 1);
  for (int s = 0; s < alphabet; ++s, pos += 2) storeLE<uint16_t>(out + pos, freq[s]);
  uint8_t* table = out + pos;
  pos = static_cast<size_t>(tableEnd);

  detail::RansEncodeTable enc;
  detail::buildEncodeTable(freq, alphabet, probBits, &enc);
  const int64_t blockLen = int64_t{1} << logBlock;
  for (uint64_t b = 0; b < blocks; ++b) {
    const int64_t first = static_cast<int64_t>(b) * blockLen;
    const int64_t m = std::min(blockLen, n - first);
    const int64_t bytes = detail::encodeBlock(sym + first, m, enc, out + pos, limit - pos);
    if (bytes < 0) return 0;
    storeLE<uint32_t>(table + 4 * b, static_cast<uint32_t>(bytes));
    pos += static_cast<size_t>(bytes);
  }
  return pos;
}

// A rans-mode stream, its header, frequency table and block table checked against n.
struct RansLayout {
  int probBits = 0;
  int logBlock = 0;
  int alphabet = 0;
  uint16_t freq[256] = {};
  uint64_t blocks = 0;
  const uint8_t* table = nullptr;  // u32 bytes per block
  const uint8_t* data = nullptr;   // the first block
};

RansLayout parseRans(const uint8_t* in, size_t len, int64_t n, int maxAlphabet) {
  const detail::RansHeader h = detail::parseRansHeader(in, len, maxAlphabet);
  RansLayout r;
  r.probBits = h.probBits;
  r.logBlock = h.logBlock;
  r.alphabet = h.alphabet;
  std::memcpy(r.freq, h.freq, sizeof(r.freq));
  r.blocks = blockCount(n, r.logBlock);
  r.table = in + h.tableEnd;
  const size_t after = detail::checkBlockTableRoom(len, h.tableEnd, r.blocks, n);
  detail::checkBlockTable(r.table, r.blocks, after, nullptr);
  r.data = r.table + 4 * r.blocks;
  return r;
}

// Decodes every block of r in order: symbols [first, first + count) go to out(first, count), and
// done(first, count) follows each block.
template <typename Out, typename Done>
void decodeBlocks(const RansLayout& r, int64_t n, Out&& out, Done&& done) {
  detail::RansDecodeTable dec;
  detail::buildDecodeTable(r.freq, r.alphabet, r.probBits, &dec);
  const int64_t blockLen = int64_t{1} << r.logBlock;
  const uint8_t* pos = r.data;
  for (uint64_t b = 0; b < r.blocks; ++b) {
    const int64_t first = static_cast<int64_t>(b) * blockLen;
    const int64_t count = std::min(blockLen, n - first);
    const uint32_t bytes = loadLE<uint32_t>(r.table + 4 * b);
    detail::decodeBlock(pos, bytes, count, dec, out(first, count), static_cast<int64_t>(b));
    done(first, count);
    pos += bytes;
  }
}

// Checks a packed stream of n symbols and returns its bit width.
int checkPacked(const uint8_t* in, size_t len, int64_t n) {
  detail::checkPacked(in[1], len, n, in[len - 1]);
  return in[1];
}

// Unpacks symbols [first, first + count) of a checked packed stream; first is a multiple of 8.
void unpackRange(const uint8_t* in, int width, int64_t first, int64_t count, int maxAlphabet,
                 uint8_t* sym) {
  unpackBits(in + kHeaderBytes + static_cast<size_t>(first / 8) * width, count, width, sym);
  if ((1 << width) <= maxAlphabet) return;
  for (int64_t i = 0; i < count; ++i) {
    CDL_CHECK(sym[i] < maxAlphabet, "packed stream: symbol ", int(sym[i]), " at index ", first + i,
              " is not below ", maxAlphabet);
  }
}

// Checks the arguments and the 4-byte header common to every mode; returns the mode.
int checkStream(const uint8_t* in, size_t len, int64_t n, int maxAlphabet, bool haveOut) {
  CDL_CHECK(n >= 0, "rans: element count ", n, " is negative");
  CDL_CHECK(maxAlphabet >= 1 && maxAlphabet <= 256, "rans: maxAlphabet = ", maxAlphabet,
            ", must be in 1..256");
  CDL_CHECK((in != nullptr || len == 0) && (haveOut || n == 0), "rans: null buffer for ", n,
            " symbols");
  return detail::checkStreamHeader(in, len, maxAlphabet);
}

}  // namespace

namespace detail {

uint64_t blockCount(int64_t n, int logBlock) {
  return n == 0 ? 0 : ((static_cast<uint64_t>(n) - 1) >> logBlock) + 1;
}

size_t writeStreamHeader(uint8_t* out, RansMode mode, int arg, int logBlock, int alphabetM1) {
  out[0] = mode;
  out[1] = static_cast<uint8_t>(arg);
  out[2] = static_cast<uint8_t>(logBlock);
  out[3] = static_cast<uint8_t>(alphabetM1);
  return kHeaderBytes;
}

RansPlan planRans(const uint64_t* hist, int64_t n, const RansOptions& opt) {
  RansPlan p;
  int distinct = 0;
  int maxSym = 0;
  for (int s = 0; s < 256; ++s) {
    if (hist[s] > 0) {
      ++distinct;
      maxSym = s;
    }
  }
  if (distinct == 1) {
    p.mode = kModeConstant;
    p.symbol = maxSym;
    return p;
  }
  p.width = std::max(1, ceilLog2(uint64_t(maxSym) + 1));
  p.packedBytes = kHeaderBytes + packedBytes(n, p.width);
  p.alphabet = maxSym + 1;
  p.probBits = std::max(opt.probBits, ceilLog2(uint64_t(distinct)));
  normalizeFrequencies(hist, p.alphabet, p.probBits, p.freq);
  const double fixed =
      kHeaderBytes + 2.0 * p.alphabet + double(blockCount(n, opt.logBlock)) * (4 + kRansStateBytes);
  const double estimate = fixed + modelBits(hist, p.freq, p.alphabet, p.probBits) / 8;
  p.mode = estimate < double(p.packedBytes) ? kModeRans : kModePacked;
  return p;
}

int checkStreamHeader(const uint8_t* head, size_t len, int maxAlphabet) {
  CDL_CHECK(len >= kHeaderBytes, "rans stream: ", len, " bytes, shorter than its ", kHeaderBytes,
            "-byte header");
  const int mode = head[0];
  CDL_CHECK(mode == kPacked || mode == kRans || mode == kConstant, "rans stream: unknown mode ",
            mode);
  CDL_CHECK(mode == kRans || (head[2] == 0 && head[3] == 0), "rans stream: mode ", mode,
            " with nonzero logBlock or alphabet bytes");
  if (mode == kConstant) {
    CDL_CHECK(len == kHeaderBytes, "constant stream: ", len - kHeaderBytes,
              " bytes after the header, expected none");
    CDL_CHECK(head[1] < maxAlphabet, "constant stream: symbol ", int(head[1]), " is not below ",
              maxAlphabet);
  }
  return mode;
}

RansHeader parseRansHeader(const uint8_t* head, size_t len, int maxAlphabet) {
  RansHeader h;
  h.probBits = head[1];
  h.logBlock = head[2];
  h.alphabet = head[3] + 1;
  CDL_CHECK(h.probBits >= 1 && h.probBits <= kMaxProbBits, "rans stream: probBits = ", h.probBits,
            ", must be in 1..", kMaxProbBits);
  CDL_CHECK(h.logBlock >= kMinLogBlock && h.logBlock <= kMaxLogBlock,
            "rans stream: logBlock = ", h.logBlock, ", must be in ", kMinLogBlock, "..",
            kMaxLogBlock);
  CDL_CHECK(h.alphabet <= maxAlphabet, "rans stream: alphabet of ", h.alphabet,
            " symbols exceeds the expected ", maxAlphabet);
  CDL_CHECK(len - kHeaderBytes >= 2 * size_t(h.alphabet), "rans stream: ", len,
            " bytes cannot hold the frequency table of ", h.alphabet, " symbols");
  uint32_t sum = 0;
  for (int s = 0; s < h.alphabet; ++s) {
    h.freq[s] = loadLE<uint16_t>(head + kHeaderBytes + 2 * s);
    sum += h.freq[s];
  }
  CDL_CHECK(sum == (1u << h.probBits), "rans stream: frequencies sum to ", sum, ", not 2^",
            h.probBits);
  h.tableEnd = kHeaderBytes + 2 * size_t(h.alphabet);
  return h;
}

size_t checkBlockTableRoom(size_t len, size_t tableEnd, uint64_t blocks, int64_t n) {
  CDL_CHECK((len - tableEnd) / 4 >= blocks, "rans stream: ", len,
            " bytes cannot hold the table of ", blocks, " blocks that ", n, " symbols need");
  return len - tableEnd - 4 * blocks;
}

void checkBlockTable(const uint8_t* table, uint64_t blocks, size_t after, uint64_t* offsets) {
  uint64_t total = 0;
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint32_t bytes = loadLE<uint32_t>(table + 4 * b);
    CDL_CHECK(bytes >= kRansStateBytes && bytes % 2 == 0, "rans block ", b, ": size ", bytes,
              " is not 128 bytes of states plus whole 16-bit words");
    if (offsets != nullptr) offsets[b] = total;
    total += bytes;
    CDL_CHECK(total <= after, "rans stream: blocks 0..", b, " take ", total, " bytes but only ",
              after, " follow the block table");
  }
  CDL_CHECK(total == after, "rans stream: blocks take ", total, " bytes but ", after,
            " follow the block table");
  if (offsets != nullptr) offsets[blocks] = total;
}

void checkPacked(int width, size_t len, int64_t n, uint8_t last) {
  CDL_CHECK(width >= 1 && width <= 8, "packed stream: bit width ", width, ", must be in 1..8");
  const size_t bytes = packedBytes(n, width);
  CDL_CHECK(len - kHeaderBytes == bytes, "packed stream: ", len - kHeaderBytes,
            " bytes after the header, expected ", bytes, " for ", n, " symbols of ", width,
            " bits");
  const uint64_t usedBits = (static_cast<uint64_t>(n) * width) % 8;
  CDL_CHECK(usedBits == 0 || (last >> usedBits) == 0,
            "packed stream: padding bits of the last byte are not zero");
}

}  // namespace detail

size_t ransMaxEncodedBytes(int64_t n, const RansOptions& opt) {
  checkOptions(opt);
  CDL_CHECK(n >= 0, "rans: element count ", n, " is negative");
  // Rans is only kept when it is smaller than the packed form, which never exceeds 8 bits a symbol.
  return kHeaderBytes + packedBytes(n, 8);
}

size_t ransEncode(const uint8_t* sym, int64_t n, uint8_t* out, size_t capacity,
                  const RansOptions& opt, const uint64_t* counts) {
  const size_t bound = ransMaxEncodedBytes(n, opt);
  CDL_CHECK(out != nullptr && (sym != nullptr || n == 0), "rans: null buffer for ", n, " symbols");
  CDL_CHECK(capacity >= bound, "rans: output capacity ", capacity, " is below the ", bound,
            " bytes that ransMaxEncodedBytes gives for ", n, " symbols");
  if (n == 0) return writeStreamHeader(out, kConstant, 0, 0, 0);

  uint64_t hist[256];
  if (counts != nullptr) {
    std::memcpy(hist, counts, sizeof(hist));
    uint64_t sum = 0;
    for (int s = 0; s < 256; ++s) sum += hist[s];
    CDL_CHECK(sum == static_cast<uint64_t>(n), "rans: the given counts add up to ", sum, ", not ",
              n);
  } else {
    histogram(sym, n, hist);
  }
  const detail::RansPlan p = detail::planRans(hist, n, opt);
  if (p.mode == kConstant) return writeStreamHeader(out, kConstant, p.symbol, 0, 0);
  if (p.mode == kRans) {
    const size_t bytes =
        encodeRans(sym, n, p.freq, p.alphabet, p.probBits, opt.logBlock, out, p.packedBytes - 1);
    if (bytes > 0) return bytes;
  }
  const size_t pos = writeStreamHeader(out, kPacked, p.width, 0, 0);
  packBits(sym, n, p.width, out + pos);
  return p.packedBytes;
}

void ransDecode(const uint8_t* in, size_t len, int64_t n, uint8_t* sym, int maxAlphabet) {
  switch (checkStream(in, len, n, maxAlphabet, sym != nullptr)) {
    case kConstant:
      if (n > 0) std::memset(sym, in[1], static_cast<size_t>(n));
      return;
    case kPacked:
      return unpackRange(in, checkPacked(in, len, n), 0, n, maxAlphabet, sym);
    default:
      decodeBlocks(
          parseRans(in, len, n, maxAlphabet), n,
          [&](int64_t first, int64_t) { return sym + first; }, [](int64_t, int64_t) {});
  }
}

void ransDecodeChunks(const uint8_t* in, size_t len, int64_t n, int maxAlphabet,
                      const SymbolSink& sink) {
  const int mode = checkStream(in, len, n, maxAlphabet, true);
  std::vector<uint8_t> buf;
  if (mode == kRans) {
    const RansLayout r = parseRans(in, len, n, maxAlphabet);
    buf.resize(static_cast<size_t>(std::min(n, int64_t{1} << r.logBlock)));
    decodeBlocks(
        r, n, [&](int64_t, int64_t) { return buf.data(); },
        [&](int64_t first, int64_t count) { sink(buf.data(), first, count); });
    return;
  }
  const int width = mode == kPacked ? checkPacked(in, len, n) : 0;
  buf.resize(static_cast<size_t>(std::min(n, kChunkSymbols)));
  for (int64_t first = 0; first < n; first += kChunkSymbols) {
    const int64_t count = std::min(kChunkSymbols, n - first);
    if (mode == kPacked) {
      unpackRange(in, width, first, count, maxAlphabet, buf.data());
    } else {
      std::memset(buf.data(), in[1], static_cast<size_t>(count));
    }
    sink(buf.data(), first, count);
  }
}

}  // namespace cdl::kernels
