// libFuzzer target: reading arbitrary bytes as a coded model file (Note [Coded model file]) must
// either succeed or throw cdl::Error, never crash or touch memory it does not own. Each input is
// read twice: with its hashes checked, and without, so that mutated fields and streams reach the
// checks behind the hashes. What is read is also reported (as `cdl-model inspect` does).
#include <cstdint>

#include "core/model_file.h"
#include "core/model_report.h"
#include "kernels/base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (bool verify : {true, false}) {
    try {
      const cdl::core::ModelFile f = cdl::core::decodeModelFile(data, size, true, verify);
      cdl::core::reportModel(f);
    } catch (const cdl::Error&) {
    }
  }
  return 0;
}
