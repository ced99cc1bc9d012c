#pragma once

// Note [Byte order]
// Every format cdl writes (payloads, rANS streams, scheme state, checkpoints' side data) stores
// integers and floats little-endian. The loads and stores below are the only place that says so:
// cdl builds only for little-endian hosts (the static_assert), where they are plain memcpy, which
// the compiler turns into single moves at any alignment. Big-endian formats read from outside
// (the IDX files of Fashion-MNIST) use loadBigEndian32.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cdl stores its formats in host byte order and supports little-endian hosts only"
#endif

namespace cdl {

// A buffer of bytes: a payload, a message between ranks, a serialized state.
using Bytes = std::vector<uint8_t>;

// The T (an integer or float) stored little-endian at p, at any alignment.
template <typename T>
inline T loadLE(const uint8_t* p) {
  static_assert(std::is_arithmetic_v<T>, "loadLE reads integers and floats");
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Stores v little-endian at p, at any alignment.
template <typename T>
inline void storeLE(uint8_t* p, T v) {
  static_assert(std::is_arithmetic_v<T>, "storeLE writes integers and floats");
  std::memcpy(p, &v, sizeof(T));
}

// The 32-bit unsigned integer stored big-endian at p.
inline uint32_t loadBigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace cdl
