#include "comm/codec/codec.h"

#include "comm/codec/codecs.h"
#include "comm/codec/registry.h"
#include "kernels/base/error.h"

namespace cdl::comm {

void Codec::decode(const uint8_t* in, size_t len, float* out, int64_t n, bool accumulate) const {
  const PayloadHeader h = readHeader(in, len);
  CDL_CHECK(h.codec == id(), "payload: encoded with codec '", codecName(h.codec),
            "' but decoded as '", name(), "'");
  CDL_CHECK(n >= 0 && h.numel == static_cast<uint64_t>(n), "payload: holds ", h.numel,
            " elements but the destination has ", n);
  CDL_CHECK(out != nullptr || n == 0, "payload: null destination");
  decodeBody(h, in + kHeaderBytes, out, n, accumulate);
}

Bytes Codec::encode(const float* x, int64_t n, const LayerRate& rate, uint64_t roundingKey) const {
  Bytes p(maxEncodedBytes(n, rate));
  p.resize(encode(x, n, rate, roundingKey, p.data(), p.size()));
  return p;
}

namespace {

void requireHost(const Codec& codec, const BufferPlace& place, const char* what) {
  CDL_CHECK(place.memory == BufferMemory::kHost, codec.name(), ": a batch to ", what,
            " in the memory of device cuda:", place.device,
            " reached the host codecs; device buffers go through the GPU codecs "
            "(comm/codec/cuda)");
}

}  // namespace

void Codec::encodeChunk(EncodeChunk& c, const LayerRate& rate) const {
  c.bytes = encode(c.x, c.n, rate, c.roundingKey, c.out, c.capacity);
  if (c.residual == nullptr) return;
  decode(c.out, c.bytes, c.residual, c.n, /*accumulate=*/false);
  for (int64_t i = 0; i < c.n; ++i) c.residual[i] = c.x[i] - c.residual[i];
}

void forEachChunk(const Codec& codec, size_t count, const std::string& where,
                  const std::function<void(size_t)>& fn) {
  for (size_t i = 0; i < count; ++i) {
    try {
      fn(i);
    } catch (const Error& e) {
      CDL_THROW(codec.name(), ": chunk ", i, " of ", count, where, ": ", errorBody(e.what()));
    }
  }
}

void Codec::encodeBatch(EncodeChunk* chunks, size_t count, const LayerRate& rate,
                        const BufferPlace& place) const {
  requireHost(*this, place, "encode");
  forEachChunk(*this, count, "", [&](size_t i) { encodeChunk(chunks[i], rate); });
}

void Codec::decodeBatch(const DecodeChunk* chunks, size_t count, const BufferPlace& place) const {
  requireHost(*this, place, "decode");
  forEachChunk(*this, count, "", [&](size_t i) {
    const DecodeChunk& c = chunks[i];
    decode(c.in, c.len, c.out, c.n, c.accumulate);
  });
}

std::unique_ptr<Codec> makeCodec(CodecId id) {
  const CodecEntry* e = findCodec(id);
  CDL_CHECK(e != nullptr, "unknown codec id ", static_cast<int>(id));
  return e->make();
}

std::unique_ptr<Codec> makeCodec(const std::string& name) {
  if (const CodecEntry* e = findCodec(name)) return e->make();
  CDL_CHECK(name != "powersgd",
            "powersgd is not a payload codec but a reduction scheme (comm/reduce/scheme.h)");
  CDL_THROW("unknown codec '", name, "' (expected ", codecNames(), ")");
}

}  // namespace cdl::comm
