// libFuzzer target: loading arbitrary bytes as a checkpoint (Note [Checkpoints]) into a model
// with SGD and with Adam must either succeed or throw cdl::Error, never crash. The file goes
// through a real path, as --resume reads it. Each input is loaded as given (a mutated checkpoint
// must be refused by its content hash), then resealed, its hash recomputed as a forged file's
// would be, so that the mutated container reaches every check behind the hash.
#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/run/checkpoint.h"
#include "kernels/base/error.h"
#include "tests/fuzz/checkpoint_net.h"
#include "tests/fuzz/fuzz_files.h"

namespace {

const std::string& path() {
  static const cdl::test::TempDir dir("cdl_ckpt_fuzz", cdl::test::memoryTempBase());
  static const std::string p = dir.path() + "/ckpt-0000000001.rank0.ckpt";
  return p;
}

void load(const uint8_t* data, size_t size) {
  cdl::test::writeInput(path(), data, size);
  static cdl::test::FuzzNet net;
  static auto sgd = cdl::test::fuzzOptimizer(net);
  static auto adam = cdl::test::fuzzAdam(net);
  for (torch::optim::Optimizer* optimizer : {static_cast<torch::optim::Optimizer*>(sgd.get()),
                                             static_cast<torch::optim::Optimizer*>(adam.get())}) {
    try {
      cdl::core::loadCheckpoint(path(), net, *optimizer);
    } catch (const cdl::Error&) {
    }
  }
  try {
    cdl::core::loadCheckpointWeights(path(), net);
  } catch (const cdl::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  load(data, size);
  // Resealed: the body with a trailer that matches it.
  constexpr char kMagic[8] = {'C', 'D', 'L', 'C', 'K', 'P', 'T', '4'};
  const size_t body = size >= 16 ? size - 16 : size;
  std::vector<uint8_t> sealed(data, data + body);
  const uint64_t hash = XXH64(sealed.data(), sealed.size(), 0);
  sealed.resize(body + 16);
  std::memcpy(sealed.data() + body, &hash, 8);
  std::memcpy(sealed.data() + body + 8, kMagic, 8);
  load(sealed.data(), sealed.size());
  return 0;
}
