#include "comm/codec/spec.h"

#include <cstdlib>
#include <sstream>

#include "kernels/base/error.h"

namespace cdl::comm {

SpecItems splitSpec(const std::string& spec) {
  SpecItems out;
  const size_t colon = spec.find(':');
  out.name = spec.substr(0, colon);
  if (colon == std::string::npos) return out;
  std::stringstream items(spec.substr(colon + 1));
  std::string item;
  while (std::getline(items, item, ',')) {
    const size_t eq = item.find('=');
    CDL_CHECK(eq != std::string::npos, "codec spec '", spec, "': '", item, "' is not key=value");
    out.items.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  return out;
}

int64_t specInteger(const std::string& spec, const std::string& key, const std::string& value,
                    int64_t lo, int64_t hi) {
  char* end = nullptr;
  const long long x = std::strtoll(value.c_str(), &end, 10);
  CDL_CHECK(!value.empty() && *end == '\0', "codec spec '", spec, "': ", key, "=", value,
            " is not an integer");
  CDL_CHECK(x >= lo && x <= hi, "codec spec '", spec, "': ", key, " must be ", lo, "..", hi);
  return x;
}

double specNumber(const std::string& spec, const std::string& key, const std::string& value) {
  char* end = nullptr;
  const double x = std::strtod(value.c_str(), &end);
  CDL_CHECK(!value.empty() && *end == '\0', "codec spec '", spec, "': ", key, "=", value,
            " is not a number");
  return x;
}

namespace {

// Sets the rate field that key names for this codec; false when the codec has no such key.
bool setRateKey(const std::string& spec, CodecId codec, const std::string& key,
                const std::string& v, LayerRate* rate) {
  const bool qsgd = codec == CodecId::kQsgd, topk = codec == CodecId::kTopk;
  if (qsgd && key == "bits") {
    rate->bits = static_cast<int>(specInteger(spec, key, v, 1, 8));
  } else if (qsgd && key == "bucket") {
    rate->bucket = specInteger(spec, key, v, 1, int64_t{1} << 30);
  } else if (qsgd && key == "rounding") {
    CDL_CHECK(v == "nearest" || v == "stochastic", "codec spec '", spec,
              "': rounding must be nearest or stochastic");
    rate->rounding = v == "nearest" ? kernels::Rounding::kNearest : kernels::Rounding::kStochastic;
  } else if ((qsgd || topk) && key == "entropy") {
    CDL_CHECK(v == "none" || v == "rans", "codec spec '", spec, "': entropy must be none or rans");
    rate->entropy = v == "none" ? EntropyStage::kNone : EntropyStage::kRans;
  } else if (topk && key == "density") {
    rate->density = specNumber(spec, key, v);
    CDL_CHECK(rate->density > 0.0 && rate->density <= 1.0, "codec spec '", spec,
              "': density must be in (0, 1]");
  } else {
    return false;
  }
  return true;
}

}  // namespace

CodecSpec parseCodecSpec(const std::string& spec) {
  const SpecItems items = splitSpec(spec);
  CodecSpec out;
  bool known = false;
  for (int i = 0; i < kNumCodecIds && !known; ++i) {
    out.codec = static_cast<CodecId>(i);
    known = codecName(out.codec) == items.name;
  }
  CDL_CHECK(known, "codec spec '", spec, "': unknown codec '", items.name,
            "' (expected none, fp16, bf16, qsgd or topk)");
  for (const auto& [key, value] : items.items) {
    CDL_CHECK(setRateKey(spec, out.codec, key, value, &out.rate), "codec spec '", spec,
              "': unknown key '", key, "' for codec ", items.name);
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
  }
  return os.str();
}

SchemeSpec parseSchemeSpec(const std::string& spec) {
  SchemeSpec out;
  const SpecItems items = splitSpec(spec);
  if (items.name != "powersgd") {
    out.codec = parseCodecSpec(spec);
    return out;
  }
  out.scheme = SchemeId::kPowerSgd;
  for (const auto& [key, value] : items.items) {
    CDL_CHECK(key == "rank", "codec spec '", spec, "': unknown key '", key, "' for powersgd");
    out.rank = static_cast<int>(specInteger(spec, key, value, 1, 1024));
  }
  return out;
}

std::string formatSchemeSpec(const SchemeSpec& spec) {
  if (spec.scheme == SchemeId::kPowerSgd) return "powersgd:rank=" + std::to_string(spec.rank);
  return formatCodecSpec(spec.codec);
}

}  // namespace cdl::comm
