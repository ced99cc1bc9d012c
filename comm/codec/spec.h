#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "comm/codec/codec.h"

namespace cdl::comm {

// A payload codec with its rate, as written in configs and on command lines:
//   "none", "fp16", "bf16", "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans",
//   "topk:density=0.01,entropy=rans". Unnamed keys keep LayerRate's defaults.
struct CodecSpec {
  CodecId codec = CodecId::kNone;
  LayerRate rate;
};

// Parses a codec spec; throws cdl::Error naming the unknown codec, key or bad value.
CodecSpec parseCodecSpec(const std::string& spec);
// The spec with every key its codec reads, in the order above.
std::string formatCodecSpec(const CodecSpec& spec);

// The grammar every spec shares, "name[:key=value[,key=value...]]", for the specs built on top
// of codec specs (reduction schemes): the name and the items in order. Throws cdl::Error naming
// the spec when an item is not key=value.
struct SpecItems {
  std::string name;
  std::vector<std::pair<std::string, std::string>> items;
};
SpecItems splitSpec(const std::string& spec);
// An item's value as an integer in [lo, hi] or a number; throws naming the spec and key.
int64_t specInteger(const std::string& spec, const std::string& key, const std::string& value,
                    int64_t lo, int64_t hi);
double specNumber(const std::string& spec, const std::string& key, const std::string& value);

}  // namespace cdl::comm
