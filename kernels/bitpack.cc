#include "kernels/bitpack.h"

#include <algorithm>
#include <cstring>

#include "kernels/base/bytes.h"
#include "kernels/base/cpu_dispatch.h"
#include "kernels/base/error.h"

namespace cdl::kernels {
namespace {

// Eight symbols, one per byte of a little-endian word, pack into exactly `kBits` bytes. A group
// is packed by merging neighbouring fields three times (8 -> 4 -> 2 -> 1 fields) and unpacked by
// the mirror steps, all as word-wide shifts and masks.
template <int kBits>
constexpr uint64_t kSymbolMask = 0x0101010101010101ull * ((1u << kBits) - 1u);

template <int kBits>
inline uint64_t packGroup(uint64_t v) {
  v &= kSymbolMask<kBits>;
  v = (v & 0x00ff00ff00ff00ffull) | ((v & 0xff00ff00ff00ff00ull) >> (8 - kBits));
  v = (v & 0x0000ffff0000ffffull) | ((v & 0xffff0000ffff0000ull) >> (16 - 2 * kBits));
  v = (v & 0x00000000ffffffffull) | ((v & 0xffffffff00000000ull) >> (32 - 4 * kBits));
  return v;
}

template <int kBits>
inline uint64_t unpackGroup(uint64_t v) {
  constexpr uint64_t kField4 = (1ull << (4 * kBits)) - 1;
  constexpr uint64_t kField2 = ((1ull << (2 * kBits)) - 1) * 0x0000000100000001ull;
  constexpr uint64_t kField1 = ((1ull << kBits) - 1) * 0x0001000100010001ull;
  v = (v & kField4) | (((v >> (4 * kBits)) & kField4) << 32);
  v = (v & kField2) | (((v >> (2 * kBits)) & kField2) << 16);
  v = (v & kField1) | (((v >> kBits) & kField1) << 8);
  return v;
}

template <int kBits>
void packFixed(const uint8_t* sym, int64_t n, uint8_t* out) {
  const int64_t groups = n / 8;
  for (int64_t g = 0; g < groups; ++g) {
    const uint64_t v = packGroup<kBits>(loadLE<uint64_t>(sym + 8 * g));
    std::memcpy(out + kBits * g, &v, kBits);
  }
  const int64_t rest = n - 8 * groups;
  if (rest > 0) {
    uint8_t tail[8] = {};
    std::memcpy(tail, sym + 8 * groups, static_cast<size_t>(rest));
    const uint64_t v = packGroup<kBits>(loadLE<uint64_t>(tail));
    std::memcpy(out + kBits * groups, &v, static_cast<size_t>((rest * kBits + 7) / 8));
  }
}

template <int kBits>
void unpackFixed(const uint8_t* in, int64_t n, uint8_t* sym) {
  const int64_t groups = n / 8;
  // Groups whose 8-byte load stays inside the input read a whole word; unpackGroup ignores the
  // bits beyond the group's 8 * kBits.
  const int64_t bytes = static_cast<int64_t>(packedBytes(n, kBits));
  const int64_t wide = bytes < 8 ? 0 : std::min(groups, (bytes - 8) / kBits + 1);
  for (int64_t g = 0; g < wide; ++g) {
    const uint64_t v = unpackGroup<kBits>(loadLE<uint64_t>(in + kBits * g));
    std::memcpy(sym + 8 * g, &v, sizeof(v));
  }
  for (int64_t g = wide; g < groups; ++g) {
    uint64_t v = 0;
    std::memcpy(&v, in + kBits * g, kBits);
    v = unpackGroup<kBits>(v);
    std::memcpy(sym + 8 * g, &v, sizeof(v));
  }
  const int64_t rest = n - 8 * groups;
  if (rest > 0) {
    uint64_t v = 0;
    std::memcpy(&v, in + kBits * groups, static_cast<size_t>((rest * kBits + 7) / 8));
    v = unpackGroup<kBits>(v);
    std::memcpy(sym + 8 * groups, &v, static_cast<size_t>(rest));
  }
}

template <>
void packFixed<8>(const uint8_t* sym, int64_t n, uint8_t* out) {
  std::memcpy(out, sym, static_cast<size_t>(n));
}

template <>
void unpackFixed<8>(const uint8_t* in, int64_t n, uint8_t* sym) {
  std::memcpy(sym, in, static_cast<size_t>(n));
}

CDL_TARGET_CLONES void packDispatch(const uint8_t* sym, int64_t n, int bits, uint8_t* out) {
  switch (bits) {
    case 1:
      return packFixed<1>(sym, n, out);
    case 2:
      return packFixed<2>(sym, n, out);
    case 3:
      return packFixed<3>(sym, n, out);
    case 4:
      return packFixed<4>(sym, n, out);
    case 5:
      return packFixed<5>(sym, n, out);
    case 6:
      return packFixed<6>(sym, n, out);
    case 7:
      return packFixed<7>(sym, n, out);
    default:
      return packFixed<8>(sym, n, out);
  }
}

CDL_TARGET_CLONES void unpackDispatch(const uint8_t* in, int64_t n, int bits, uint8_t* sym) {
  switch (bits) {
    case 1:
      return unpackFixed<1>(in, n, sym);
    case 2:
      return unpackFixed<2>(in, n, sym);
    case 3:
      return unpackFixed<3>(in, n, sym);
    case 4:
      return unpackFixed<4>(in, n, sym);
    case 5:
      return unpackFixed<5>(in, n, sym);
    case 6:
      return unpackFixed<6>(in, n, sym);
    case 7:
      return unpackFixed<7>(in, n, sym);
    default:
      return unpackFixed<8>(in, n, sym);
  }
}

}  // namespace

void checkBitpackArgs(const char* what, const void* src, int64_t n, int bits, const void* dst) {
  CDL_CHECK(bits >= 1 && bits <= 8, what, ": bits = ", bits, ", must be in 1..8");
  CDL_CHECK(n >= 0, what, ": element count ", n, " is negative");
  CDL_CHECK(n == 0 || (src != nullptr && dst != nullptr), what, ": null buffer for ", n,
            " symbols");
}

size_t packedBytes(int64_t n, int bits) {
  CDL_CHECK(bits >= 1 && bits <= 8, "packedBytes: bits = ", bits, ", must be in 1..8");
  CDL_CHECK(n >= 0, "packedBytes: element count ", n, " is negative");
  const uint64_t un = static_cast<uint64_t>(n);
  return static_cast<size_t>((un / 8) * bits + ((un % 8) * bits + 7) / 8);
}

void packBits(const uint8_t* sym, int64_t n, int bits, uint8_t* out) {
  checkBitpackArgs("packBits", sym, n, bits, out);
  if (n > 0) packDispatch(sym, n, bits, out);
}

void unpackBits(const uint8_t* in, int64_t n, int bits, uint8_t* sym) {
  checkBitpackArgs("unpackBits", in, n, bits, sym);
  if (n > 0) unpackDispatch(in, n, bits, sym);
}

}  // namespace cdl::kernels
