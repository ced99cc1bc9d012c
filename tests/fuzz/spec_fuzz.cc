// libFuzzer target: parsing arbitrary text as a codec or scheme spec (as configs and command
// lines write them) must either succeed or throw cdl::Error, never crash; and a spec that parses
// must format to a spec that parses back to the same format (what configs write and re-read).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "comm/reduce/scheme_spec.h"
#include "kernels/base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const std::string formatted = cdl::comm::formatSchemeSpec(cdl::comm::parseSchemeSpec(text));
    if (cdl::comm::formatSchemeSpec(cdl::comm::parseSchemeSpec(formatted)) != formatted) {
      std::abort();  // the formatted spec does not read back to itself
    }
  } catch (const cdl::Error&) {
  }
  try {
    cdl::comm::parseCodecSpec(text);
  } catch (const cdl::Error&) {
  }
  return 0;
}
