#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/codec/codec.h"

namespace cdl::comm {

// Note [Codec registry]
// Every payload codec is one entry of codecRegistry(): its id on the wire (CodecId), its name in
// specs, its rate keys (how a spec's value sets a LayerRate field and how the field is written
// back, in the order formatCodecSpec writes them) and its factory. A codec lives in its own file,
// which defines its entry, plus one line of registry.cc; the spec grammar (spec.cc), the names in
// payload errors, makeCodec and the fuzz targets read the codecs from here.

// One key of a codec's spec ("bits" of "qsgd:bits=4").
struct RateKey {
  const char* name;
  // Sets the rate's field from a spec's value; throws cdl::Error naming the spec and key.
  void (*parse)(const std::string& spec, const std::string& value, LayerRate* rate);
  // The field's value as a spec writes it.
  std::string (*format)(const LayerRate& rate);
};

struct CodecEntry {
  CodecId id;
  const char* name;
  std::vector<RateKey> keys;
  std::unique_ptr<Codec> (*make)();
};

// Every codec, in CodecId order.
const std::vector<CodecEntry>& codecRegistry();
// The entry of id or name; null when no codec has it.
const CodecEntry* findCodec(CodecId id);
const CodecEntry* findCodec(const std::string& name);
// The codecs' names for errors: "none, fp16, bf16, qsgd or topk".
std::string codecNames();

// The "entropy" key (none or rans), which several codecs share.
RateKey entropyRateKey();

}  // namespace cdl::comm
