#include "comm/codec/spec.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "comm/codec/registry.h"
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

CodecSpec parseCodecSpec(const std::string& spec) {
  const SpecItems items = splitSpec(spec);
  const CodecEntry* entry = findCodec(items.name);
  CDL_CHECK(entry != nullptr, "codec spec '", spec, "': unknown codec '", items.name,
            "' (expected ", codecNames(), ")");
  CodecSpec out;
  out.codec = entry->id;
  for (const auto& item : items.items) {
    const std::string& key = item.first;
    const auto k = std::find_if(entry->keys.begin(), entry->keys.end(),
                                [&](const RateKey& r) { return key == r.name; });
    CDL_CHECK(k != entry->keys.end(), "codec spec '", spec, "': unknown key '", key, "' for codec ",
              items.name);
    k->parse(spec, item.second, &out.rate);
  }
  return out;
}

std::string formatCodecSpec(const CodecSpec& spec) {
  const CodecEntry* entry = findCodec(spec.codec);
  CDL_CHECK(entry != nullptr, "unknown codec id ", static_cast<int>(spec.codec));
  std::string out = entry->name;
  for (size_t i = 0; i < entry->keys.size(); ++i) {
    const RateKey& k = entry->keys[i];
    out += (i == 0 ? ":" : ",") + std::string(k.name) + "=" + k.format(spec.rate);
  }
  return out;
}

}  // namespace cdl::comm
