// libFuzzer target: parsing arbitrary bytes as a config must either succeed or throw cdl::Error,
// never crash. The input is the YAML text, then optionally a NUL byte and one --set override. A
// config that loads must write (toYaml, as the run folder's config.yaml) text that reads back to
// the same config and hash.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "kernels/base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(text, '\0', size);
  const size_t yamlBytes = nul ? static_cast<size_t>(static_cast<const char*>(nul) - text) : size;
  const std::string yaml(text, yamlBytes);
  std::vector<std::string> sets;
  if (nul) sets.emplace_back(text + yamlBytes + 1, size - yamlBytes - 1);
  cdl::core::Config c;
  try {
    c = cdl::core::parseConfig(yaml, "fuzz.yaml", sets);
  } catch (const cdl::Error&) {
    return 0;
  }
  const std::string written = cdl::core::toYaml(c);
  try {
    const cdl::core::Config back = cdl::core::parseConfig(written, "config.yaml");
    if (back != c || cdl::core::configHash(back) != cdl::core::configHash(c)) std::abort();
  } catch (const cdl::Error&) {
    std::abort();  // a config that loaded wrote text that does not load
  }
  return 0;
}
