// The small model and optimizer that checkpoint_fuzz loads its inputs into, and that
// make_checkpoint_seeds saves its seeds from: a linear layer and a batch norm (parameters and
// buffers), SGD with momentum and Adam with amsgrad (optimizer state).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <memory>

namespace cdl::test {

struct FuzzNet : torch::nn::Module {
  FuzzNet() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

inline std::unique_ptr<torch::optim::SGD> fuzzOptimizer(FuzzNet& net) {
  return std::make_unique<torch::optim::SGD>(net.parameters(),
                                             torch::optim::SGDOptions(0.1).momentum(0.9));
}

inline std::unique_ptr<torch::optim::Adam> fuzzAdam(FuzzNet& net) {
  return std::make_unique<torch::optim::Adam>(net.parameters(),
                                              torch::optim::AdamOptions(0.1).amsgrad(true));
}

}  // namespace cdl::test
