#include "core/step/evaluation.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>

#include <algorithm>
#include <vector>

#include "core/data/batch.h"
#include "core/models/models.h"
#include "core/run/collectives.h"

namespace cdl::core {

Evaluation evaluate(Net& model, const ImageSet& test, comm::Communicator& c) {
  at::NoGradGuard noGrad;
  model.eval();
  const c10::Device device = modelDevice(model);
  const std::vector<int64_t> idx = evalShard(test.count, c.rank(), c.size());
  double lossSum = 0.0, correct = 0.0, count = 0.0;  // count: examples, or a text set's tokens
  constexpr size_t kBatch = 1000;
  for (size_t b = 0; b < idx.size(); b += kBatch) {
    auto [x, y] = toDevice(makeBatch(test, idx, b, std::min(idx.size(), b + kBatch)), device);
    const at::Tensor logits = model.forward(x);
    lossSum += at::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    correct += at::argmax(logits, 1).eq(y).sum().item<double>();
    count += static_cast<double>(y.numel());
  }
  model.train();
  const auto total = sumOverRanks(
      c, {static_cast<float>(lossSum), static_cast<float>(correct), static_cast<float>(count)});
  return {total[0] / total[2], total[1] / total[2]};
}

}  // namespace cdl::core
