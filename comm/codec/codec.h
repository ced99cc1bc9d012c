#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/codec/wire.h"
#include "kernels/base/bytes.h"
#include "kernels/quantize.h"

namespace cdl::comm {

enum class EntropyStage : uint8_t { kNone = 0, kRans = 1 };

// How hard a payload codec compresses one tensor: the rate a planner may choose per layer. Each
// codec reads the fields that concern it.
struct LayerRate {
  int bits = 4;                                                 // qsgd: 1..8
  int64_t bucket = 1024;                                        // qsgd: elements per scale
  kernels::Rounding rounding = kernels::Rounding::kStochastic;  // qsgd
  EntropyStage entropy = EntropyStage::kRans;                   // qsgd, topk
  double density = 0.01;                                        // topk: kept fraction, (0, 1]
};

// Where a batch's buffers live (Note [Codec batches]).
enum class BufferMemory : uint8_t { kHost, kDevice };
struct BufferPlace {
  BufferMemory memory = BufferMemory::kHost;
  int device = -1;         // device memory: the GPU's index
  void* stream = nullptr;  // device memory: the cudaStream_t the work is ordered on (null: the
                           // default stream)
};

// One chunk of a batched encode: x[0..n) into out[0..capacity), capacity >= maxEncodedBytes(n).
struct EncodeChunk {
  const float* x = nullptr;
  int64_t n = 0;
  uint64_t roundingKey = 0;
  uint8_t* out = nullptr;
  size_t capacity = 0;
  // Optional: receives x - decode(payload), what error feedback keeps, without a decode pass
  // where the codec can (qsgd computes it from its symbols); may not alias x.
  float* residual = nullptr;
  size_t bytes = 0;  // set by the encode: the payload's size
};

// One chunk of a batched decode: in[0..len) into out[0..n), overwritten or added to.
struct DecodeChunk {
  const uint8_t* in = nullptr;
  size_t len = 0;
  float* out = nullptr;
  int64_t n = 0;
  bool accumulate = false;
};

// Note [Codec batches]
// A collective encodes a segment's chunks (one per peer) with one rate. encodeBatch and
// decodeBatch take them together with where their buffers live (dietgpu's shape: raw pointers,
// sizes, a bound on each output, a place with its stream). The codecs here run on host memory;
// a batch in device memory goes through comm/codec/cuda (the GPU codecs, which write the same
// bytes), and given here it is an error naming the codec and the device. A failure names the
// chunk's index; chunks before it are complete, the failed one's output is unspecified.

class Codec;

// Runs fn(i) for each chunk i of a batch of `count` (Note [Codec batches]); a failure becomes one
// error "<codec>: chunk i of count<where>: <what>".
void forEachChunk(const Codec& codec, size_t count, const std::string& where,
                  const std::function<void(size_t)>& fn);

// Turns a flat fp32 buffer into a self-describing payload (Note [Payload wire format]) and back.
// Codecs hold no state between calls and may be shared by threads.
class Codec {
 public:
  virtual ~Codec() = default;

  virtual CodecId id() const = 0;
  std::string name() const { return codecName(id()); }

  // What a collective needs to know of the codec (Note [Compressed allreduce]):
  // True when decoding payloads of one chunk and adding them gives the sum of the chunks within
  // the codec's error (quantizers: scatter-reduce works); false when payloads must be gathered
  // and summed by every rank (top-k).
  virtual bool summable() const = 0;
  // True when decode(encode(x)) == x bit for bit (fp32): a collective may then reduce the raw
  // floats with the transport's own allreduce, and error feedback has nothing to keep.
  virtual bool lossless() const { return false; }
  // Chunk boundaries of a scatter-reduce must fall on multiples of this many elements, so that no
  // group of elements that share a parameter (qsgd's scale buckets) is cut in two.
  virtual int64_t chunkAlignment(const LayerRate&) const { return 1; }

  // An upper bound on the payload size for n elements at this rate (header included).
  virtual size_t maxEncodedBytes(int64_t n, const LayerRate& rate) const = 0;

  // Encodes x[0..n) into out (capacity >= maxEncodedBytes) and returns the payload size.
  // roundingKey selects the stream of stochastic rounding (kernels::roundingKey(seed, step,
  // tensor)); codecs that round to nearest ignore it. Throws cdl::Error on invalid rates, and
  // when a lossy codec meets NaN or infinity (naming the index).
  virtual size_t encode(const float* x, int64_t n, const LayerRate& rate, uint64_t roundingKey,
                        uint8_t* out, size_t capacity) const = 0;

  // Decodes the payload in[0..len) into out[0..n): overwrites, or adds when accumulate is set.
  // Validates the header (codec, count, hash) and the body; throws cdl::Error saying what is
  // wrong and never touches memory outside in[0..len) and out[0..n).
  void decode(const uint8_t* in, size_t len, float* out, int64_t n, bool accumulate) const;

  // Note [Codec batches]: every chunk encoded with `rate` (chunk.bytes set), or decoded.
  void encodeBatch(EncodeChunk* chunks, size_t count, const LayerRate& rate,
                   const BufferPlace& place = {}) const;
  void decodeBatch(const DecodeChunk* chunks, size_t count, const BufferPlace& place = {}) const;

  // One chunk on the host: encode, and the residual when asked for (by default a decode of the
  // payload; codecs that know it from their encoding override this).
  virtual void encodeChunk(EncodeChunk& chunk, const LayerRate& rate) const;

  // Convenience forms.
  Bytes encode(const float* x, int64_t n, const LayerRate& rate, uint64_t roundingKey = 0) const;
  void decode(const Bytes& p, float* out, int64_t n, bool accumulate = false) const {
    decode(p.data(), p.size(), out, n, accumulate);
  }

 protected:
  // Decodes a body whose header has been validated and matches this codec and n.
  virtual void decodeBody(const PayloadHeader& h, const uint8_t* body, float* out, int64_t n,
                          bool accumulate) const = 0;
};

// The codec for an id, and for a name ("none", "fp16", "bf16", "qsgd", "topk").
std::unique_ptr<Codec> makeCodec(CodecId id);
std::unique_ptr<Codec> makeCodec(const std::string& name);

}  // namespace cdl::comm
