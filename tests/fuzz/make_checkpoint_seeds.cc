// Writes valid checkpoints of checkpoint_fuzz's model into a folder, as its seed corpus: one
// with only the core state, one with every optional part (SGD's momentum, scheme state, a rate
// plan with captured gradients, cut byte counts, a metrics window, the generator state), and one
// with Adam's state.
#include <ATen/ops/randn.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "core/run/checkpoint.h"
#include "tests/fuzz/checkpoint_net.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_checkpoint_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  torch::manual_seed(1);
  cdl::test::FuzzNet net;
  auto sgd = cdl::test::fuzzOptimizer(net);
  auto adam = cdl::test::fuzzAdam(net);
  for (int full = 0; full < 3; ++full) {
    torch::optim::Optimizer* optimizer =
        full < 2 ? static_cast<torch::optim::Optimizer*>(sgd.get()) : adam.get();
    cdl::core::TrainState s;
    s.step = 7 + full;
    s.epoch = 1;
    s.worldSize = 2;
    s.configHash = 0x1234abcd;
    if (full) {
      // One step, so that the optimizer holds its state.
      optimizer->zero_grad();
      net.bn->forward(net.fc->forward(torch::randn({4, 3}))).sum().backward();
      optimizer->step();
      s.schemeState["fc.weight"]["residual"] = {0.5f, -1.0f, 2.0f};
      s.ratePlan["fc.weight"] = "qsgd:bits=4";
      s.captured["fc.weight"] = {1.0f, 2.0f};
      s.capturedSteps = 3;
      s.cutWireBytes = 100;
      s.cutFp32Bytes = 400;
      s.metricsWindow = {1.0, 2.5};
      s.rngState = torch::ones({16}, torch::kByte);
    }
    const std::string written = cdl::core::saveCheckpoint(dir, net, *optimizer, s);
    std::filesystem::rename(written, dir + "/seed" + std::to_string(full));
  }
  return 0;
}
