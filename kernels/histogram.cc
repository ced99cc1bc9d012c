#include "kernels/histogram.h"

#include <cmath>
#include <cstring>

#include "kernels/base/bytes.h"
#include "kernels/base/cpu_dispatch.h"
#include "kernels/base/error.h"

namespace cdl::kernels {
namespace {

// Consecutive equal symbols (the common case for quantized gradients) would serialize on one
// counter; spreading the bytes of each word over four tables keeps the increments independent.
constexpr int kTables = 4;
// Elements per pass, small enough that no 32-bit sub-count can overflow.
constexpr int64_t kChunk = int64_t{1} << 30;

CDL_TARGET_CLONES void countChunk(const uint8_t* sym, int64_t n, uint32_t (*t)[256]) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = loadLE<uint64_t>(sym + i);
    ++t[0][v & 0xff];
    ++t[1][(v >> 8) & 0xff];
    ++t[2][(v >> 16) & 0xff];
    ++t[3][(v >> 24) & 0xff];
    ++t[0][(v >> 32) & 0xff];
    ++t[1][(v >> 40) & 0xff];
    ++t[2][(v >> 48) & 0xff];
    ++t[3][v >> 56];
  }
  for (; i < n; ++i) ++t[0][sym[i]];
}

}  // namespace

void histogram(const uint8_t* sym, int64_t n, uint64_t counts[256]) {
  CDL_CHECK(n >= 0, "histogram: element count ", n, " is negative");
  CDL_CHECK(counts != nullptr && (sym != nullptr || n == 0),
            "histogram: null symbol or count buffer for ", n, " symbols");
  std::memset(counts, 0, 256 * sizeof(uint64_t));
  uint32_t tables[kTables][256];
  for (int64_t start = 0; start < n; start += kChunk) {
    std::memset(tables, 0, sizeof(tables));
    countChunk(sym + start, n - start < kChunk ? n - start : kChunk, tables);
    for (int s = 0; s < 256; ++s) {
      uint64_t c = 0;
      for (int t = 0; t < kTables; ++t) c += tables[t][s];
      counts[s] += c;
    }
  }
}

double entropyBits(const uint64_t counts[256]) {
  CDL_CHECK(counts != nullptr, "entropyBits: null count buffer");
  uint64_t total = 0;
  for (int s = 0; s < 256; ++s) total += counts[s];
  if (total == 0) return 0.0;
  const double n = static_cast<double>(total);
  double bits = 0.0;
  for (int s = 0; s < 256; ++s) {
    if (counts[s] == 0) continue;
    const double c = static_cast<double>(counts[s]);
    bits += c * std::log2(n / c);
  }
  return bits;
}

}  // namespace cdl::kernels
