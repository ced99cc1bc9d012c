// libFuzzer target: loading arbitrary bytes as a checkpoint (Note [Checkpoints]) must either
// succeed or throw cdl::Error, never crash. The file goes through a real path, as --resume reads
// it. By default each input is loaded as given: a mutated checkpoint must be refused by its
// content hash before LibTorch's archive reader sees any of it. With CDL_FUZZ_FORGED=1 each input
// is also resealed (its hash recomputed), so that the mutated archive reaches LibTorch's reader,
// as a forged file would: LibTorch 1.13's TorchScript importer then crashes within seconds
// (a SEGV in ScriptTypeParser::parseClassConstant), which is why the hash is checked first.
#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "kernels/base/error.h"
#include "tests/fuzz/checkpoint_net.h"

namespace {

const std::string& path() {
  static const std::string p = [] {
    char name[] = "/tmp/cdl_ckpt_fuzz.XXXXXX";
    if (mkdtemp(name) == nullptr) std::abort();
    return std::string(name) + "/ckpt-0000000001.rank0.pt";
  }();
  return p;
}

void load(const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path().c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size)) std::abort();
  std::fclose(f);
  static cdl::test::FuzzNet net;
  static auto optimizer = cdl::test::fuzzOptimizer(net);
  try {
    cdl::core::loadCheckpoint(path(), net, *optimizer);
  } catch (const cdl::Error&) {
  }
  try {
    cdl::core::loadCheckpointWeights(path(), net);
  } catch (const cdl::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  load(data, size);
  static const bool forged = [] {
    const char* v = std::getenv("CDL_FUZZ_FORGED");
    return v != nullptr && std::string(v) == "1";
  }();
  if (!forged) return 0;
  // Resealed: the body with a trailer that matches it.
  constexpr char kMagic[8] = {'C', 'D', 'L', 'C', 'K', 'P', 'T', '3'};
  const size_t body = size >= 16 ? size - 16 : size;
  std::vector<uint8_t> sealed(data, data + body);
  const uint64_t hash = XXH64(sealed.data(), sealed.size(), 0);
  sealed.resize(body + 16);
  std::memcpy(sealed.data() + body, &hash, 8);
  std::memcpy(sealed.data() + body + 8, kMagic, 8);
  load(sealed.data(), sealed.size());
  return 0;
}
