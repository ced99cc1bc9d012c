#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/run/checkpoint.h"

namespace torch::optim {
class Optimizer;
}
namespace cdl::comm {
class Reducer;
}  // namespace cdl::comm

namespace cdl::core {

class Net;
class CdlTraining;
class StepSchedule;
class RunHook;

// What one rank trains, owned by train(): the training step, the epoch end and the checkpoints
// work on it. Every rank holds the same model and optimizer state (Note [Training loop]).
struct Replica {
  comm::Communicator& comm;
  Net& model;
  torch::optim::Optimizer& optimizer;
  comm::Reducer& reducer;  // averages the gradients; holds the error-feedback state
  // How a step runs forward and backward (Note [One training step]): the whole model at once,
  // or a split model's stage (Note [Pipeline split]), where `comm` is the stage's data-parallel
  // group and `model` the stage's part of the model.
  StepSchedule& schedule;
  std::vector<at::Tensor> buffers;  // the model's buffers (batch-norm running statistics)
  CdlTraining* cdl = nullptr;       // a CDL model's rate term, which the schedules add; else null
  // The run's optional parts, called at the loop's points (Note [Run hooks]): a CDL model's
  // quantizers, adaptive rates (comm.adaptive).
  std::vector<RunHook*> hooks;
  // Every rank of the job (checkpoints are confirmed across it); null: `comm` is the job.
  comm::Communicator* world = nullptr;
};

// Collective: copies rank 0's bytes of every tensor into every rank's. The tensors must be
// contiguous; one whose size differs from rank 0's is a cdl::Error (the models differ).
void broadcastTensors(comm::Communicator& c, const std::vector<at::Tensor>& tensors);

// The optimizer's state tensors (SGD's momentum buffers, Adam's moments) in parameter order, for
// a resumed run to take rank 0's, as it takes rank 0's parameters.
std::vector<at::Tensor> optimizerStateTensors(torch::optim::Optimizer& optimizer);

// Collective (it takes rank 0's buffers first): writes this rank's checkpoint of state to dir,
// then, once every rank of the job has written its own (a collective), keeps this rank's newest
// `keep`, and returns the path. Fills state's error feedback (from the
// reducer) and generator state (torch's default CPU generator) before writing.
std::string saveReplicaCheckpoint(const Replica& r, const std::string& dir, int64_t keep,
                                  TrainState& state);

// Loads checkpoint `path` into the replica (model, optimizer, the reducer's error feedback and
// step) and torch's default CPU generator, and sets state's step, epoch, batch and byte counts.
// A checkpoint of a run with another rank count or config (state.worldSize, state.configHash)
// is a cdl::Error naming the run's config.yaml in runDir.
void restoreReplica(const Replica& r, const std::string& path, const std::string& runDir,
                    TrainState& state);

}  // namespace cdl::core
