#include "comm/codec.h"

#include <cstdlib>
#include <sstream>

#include "comm/codecs.h"
#include "kernels/error.h"

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

Payload Codec::encode(const float* x, int64_t n, const LayerRate& rate) const {
  Payload p(maxEncodedBytes(n, rate));
  p.resize(encode(x, n, rate, p.data(), p.size()));
  return p;
}

std::unique_ptr<Codec> makeCodec(CodecId id) {
  switch (id) {
    case CodecId::kNone:
      return makeNoneCodec();
    case CodecId::kFp16:
      return makeFp16Codec();
    case CodecId::kBf16:
      return makeBf16Codec();
    case CodecId::kQsgd:
      return makeQsgdCodec();
    case CodecId::kTopk:
      return makeTopkCodec();
    case CodecId::kPowerSgd:
      CDL_THROW("powersgd is not a payload codec: reduce with comm/powersgd.h (the Reducer does)");
  }
  CDL_THROW("unknown codec id ", static_cast<int>(id));
}

std::unique_ptr<Codec> makeCodec(const std::string& name) {
  for (int i = 0; i < kNumCodecIds; ++i) {
    if (codecName(static_cast<CodecId>(i)) == name) return makeCodec(static_cast<CodecId>(i));
  }
  CDL_THROW("unknown codec '", name, "' (expected none, fp16, bf16, qsgd or topk)");
}

namespace {

int64_t parseInt(const std::string& spec, const std::string& key, const std::string& v) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  CDL_CHECK(!v.empty() && *end == '\0', "codec spec '", spec, "': ", key, "=", v,
            " is not an integer");
  return x;
}

double parseDouble(const std::string& spec, const std::string& key, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  CDL_CHECK(!v.empty() && *end == '\0', "codec spec '", spec, "': ", key, "=", v,
            " is not a number");
  return x;
}

}  // namespace

CodecSpec parseCodecSpec(const std::string& spec) {
  CodecSpec out;
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  bool known = false;
  for (int i = 0; i <= static_cast<int>(CodecId::kPowerSgd) && !known; ++i) {
    out.codec = static_cast<CodecId>(i);
    known = codecName(out.codec) == name;
  }
  CDL_CHECK(known, "codec spec '", spec, "': unknown codec '", name,
            "' (expected none, fp16, bf16, qsgd, topk or powersgd)");
  if (colon == std::string::npos) return out;
  std::stringstream items(spec.substr(colon + 1));
  std::string item;
  while (std::getline(items, item, ',')) {
    const size_t eq = item.find('=');
    CDL_CHECK(eq != std::string::npos, "codec spec '", spec, "': '", item, "' is not key=value");
    const std::string key = item.substr(0, eq), v = item.substr(eq + 1);
    const bool qsgd = out.codec == CodecId::kQsgd, topk = out.codec == CodecId::kTopk;
    const bool powerSgd = out.codec == CodecId::kPowerSgd;
    if (qsgd && key == "bits") {
      out.rate.bits = static_cast<int>(parseInt(spec, key, v));
      CDL_CHECK(out.rate.bits >= 1 && out.rate.bits <= 8, "codec spec '", spec,
                "': bits must be 1..8");
    } else if (qsgd && key == "bucket") {
      out.rate.bucket = parseInt(spec, key, v);
      CDL_CHECK(out.rate.bucket >= 1 && out.rate.bucket <= (int64_t{1} << 30), "codec spec '", spec,
                "': bucket must be 1..2^30");
    } else if (qsgd && key == "rounding") {
      CDL_CHECK(v == "nearest" || v == "stochastic", "codec spec '", spec,
                "': rounding must be nearest or stochastic");
      out.rate.rounding =
          v == "nearest" ? kernels::Rounding::kNearest : kernels::Rounding::kStochastic;
    } else if ((qsgd || topk) && key == "entropy") {
      CDL_CHECK(v == "none" || v == "rans", "codec spec '", spec,
                "': entropy must be none or rans");
      out.rate.entropy = v == "none" ? EntropyStage::kNone : EntropyStage::kRans;
    } else if (topk && key == "density") {
      out.rate.density = parseDouble(spec, key, v);
      CDL_CHECK(out.rate.density > 0.0 && out.rate.density <= 1.0, "codec spec '", spec,
                "': density must be in (0, 1]");
    } else if (powerSgd && key == "rank") {
      out.rate.rank = static_cast<int>(parseInt(spec, key, v));
      CDL_CHECK(out.rate.rank >= 1 && out.rate.rank <= 1024, "codec spec '", spec,
                "': rank must be 1..1024");
    } else {
      CDL_THROW("codec spec '", spec, "': unknown key '", key, "' for codec ", name);
    }
  }
  return out;
}

std::string formatCodecSpec(const CodecSpec& spec) {
  std::ostringstream os;
  os << codecName(spec.codec);
  const LayerRate& r = spec.rate;
  const char* entropy = r.entropy == EntropyStage::kRans ? "rans" : "none";
  if (spec.codec == CodecId::kQsgd) {
    os << ":bits=" << r.bits << ",bucket=" << r.bucket
       << ",rounding=" << (r.rounding == kernels::Rounding::kNearest ? "nearest" : "stochastic")
       << ",entropy=" << entropy;
  } else if (spec.codec == CodecId::kTopk) {
    os << ":density=" << r.density << ",entropy=" << entropy;
  } else if (spec.codec == CodecId::kPowerSgd) {
    os << ":rank=" << r.rank;
  }
  return os.str();
}

}  // namespace cdl::comm
