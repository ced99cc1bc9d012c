#pragma once

#include "comm/transport/communicator.h"
#include "core/data/data.h"

namespace cdl::core {

class Net;

struct Evaluation {
  double loss = 0.0;      // mean cross-entropy over the test set
  double accuracy = 0.0;  // fraction classified right
};

// Collective. The model's loss and accuracy on the whole test set: each rank evaluates its shard
// (evalShard) in eval mode and the sums are added over the ranks. Leaves the model in train mode.
Evaluation evaluate(Net& model, const ImageSet& test, comm::Communicator& c);

}  // namespace cdl::core
