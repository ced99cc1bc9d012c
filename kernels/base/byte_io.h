#pragma once

// Writing and reading the fields of cdl's file formats (Note [Coded model file] in
// core/model_file/model_file.h, Note [Checkpoints] in core/run/checkpoint.h): little-endian values
// (Note [Byte order]), LEB128 varints and raw bytes, every read checked against the bytes that are
// left.
#include <cstddef>
#include <cstdint>

#include "kernels/base/bytes.h"
#include "kernels/base/error.h"

namespace cdl {

// Appends fields to a growing buffer.
class ByteWriter {
 public:
  template <typename T>
  void put(T v) {
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    storeLE<T>(bytes_.data() + at, v);
  }
  // LEB128: 7 bits a byte, low bits first, the top bit set on every byte but the last.
  void putVarint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) bytes_.push_back(static_cast<uint8_t>(v | 0x80));
    bytes_.push_back(static_cast<uint8_t>(v));
  }
  void putBytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  Bytes& bytes() { return bytes_; }

 private:
  Bytes bytes_;
};

// Takes fields from data[0..n) in order; a field that does not fit in what is left throws
// cdl::Error "truncated: <what> needs N bytes, M are left". Never reads outside the bytes.
class ByteReader {
 public:
  ByteReader(const uint8_t* p, size_t n) : p_(p), left_(n) {}
  template <typename T>
  T take(const char* what) {
    need(sizeof(T), what);
    const T v = loadLE<T>(p_);
    skip(sizeof(T));
    return v;
  }
  // A LEB128 value below 2^63 in at most 9 bytes, written in its shortest form.
  uint64_t takeVarint(const char* what) {
    uint64_t v = 0;
    for (int shift = 0; shift < 63; shift += 7) {
      const uint8_t b = take<uint8_t>(what);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        CDL_CHECK(b != 0 || shift == 0, "bad varint for ", what, ": not in its shortest form");
        return v;
      }
    }
    CDL_THROW("bad varint for ", what, ": longer than 9 bytes");
  }
  const uint8_t* takeBytes(size_t n, const char* what) {
    need(n, what);
    const uint8_t* at = p_;
    skip(n);
    return at;
  }
  const uint8_t* pos() const { return p_; }
  size_t left() const { return left_; }

 private:
  void need(size_t n, const char* what) const {
    CDL_CHECK(n <= left_, "truncated: ", what, " needs ", n, " bytes, ", left_, " are left");
  }
  void skip(size_t n) {
    p_ += n;
    left_ -= n;
  }
  const uint8_t* p_;
  size_t left_;
};

}  // namespace cdl
