#include "comm/reduce/scheme_spec.h"

#include "kernels/base/error.h"

namespace cdl::comm {

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
