// libFuzzer target: reading arbitrary bytes as a coded model file (Note [Coded model file]) must
// either succeed or throw cdl::Error, never crash or touch memory it does not own. Each input is
// read twice: with its hashes checked, and without, so that mutated fields and streams reach the
// checks behind the hashes. What is read is also reported (as `cdl-model inspect` does). Index
// streams are decoded only when their tensors are small: a constant stream of 4 bytes may
// rightly stand for 2^31 symbols, and allocating those would only slow the search down.
#include <cstdint>

#include "core/model_file/model_file.h"
#include "core/model_file/model_report.h"
#include "kernels/base/error.h"

namespace {

constexpr int64_t kMaxSymbols = int64_t{1} << 22;

void read(const uint8_t* data, size_t size, bool verify) {
  try {
    const cdl::core::ModelFile outline = cdl::core::decodeModelFile(data, size, false, verify);
    int64_t symbols = 0;
    for (const cdl::core::ModelTensor& t : outline.tensors) {
      if (t.kind == cdl::core::TensorKind::kQuantized) symbols += t.numel();
    }
    if (symbols > kMaxSymbols) return;
    cdl::core::reportModel(cdl::core::decodeModelFile(data, size, true, verify));
  } catch (const cdl::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  read(data, size, true);
  read(data, size, false);
  return 0;
}
