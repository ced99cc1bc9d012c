#pragma once

#include <cstdint>
#include <string>

#include "comm/codec/spec.h"

namespace cdl::comm {

// The reduction schemes, apart from the payload codecs: a scheme may send payloads of a codec,
// or, like PowerSGD, no payloads of its own.
enum class SchemeId : uint8_t { kPayload = 0, kPowerSgd = 1 };

// A scheme with its parameters, as configs and command lines write it: a codec spec ("none",
// "qsgd:bits=4", "topk:density=0.01", ...: that codec's payloads through the compressed
// allreduce) or "powersgd:rank=R".
struct SchemeSpec {
  SchemeId scheme = SchemeId::kPayload;
  CodecSpec codec;  // kPayload: the codec and its rate
  int rank = 4;     // kPowerSgd: columns of the factors, 1..1024
};

// Parses a scheme spec; throws cdl::Error naming the unknown scheme or codec, key or bad value.
// It needs no LibTorch, so configs (and with them cdl-launch) check every spec when they load.
SchemeSpec parseSchemeSpec(const std::string& spec);
std::string formatSchemeSpec(const SchemeSpec& spec);

}  // namespace cdl::comm
