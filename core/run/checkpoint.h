#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}
namespace torch::optim {
class Optimizer;
}

namespace cdl::core {

// Where a run stands, besides the model and optimizer: enough to continue it bit for bit.
struct TrainState {
  int64_t step = 0;          // optimizer steps taken
  int64_t epoch = 0;         // the epoch the next step belongs to
  int64_t batchInEpoch = 0;  // the next step's batch within that epoch
  int worldSize = 1;
  int rank = 0;
  uint64_t configHash = 0;
  uint64_t wireBytes = 0;      // gradient bytes this rank has sent so far
  uint64_t fp32WireBytes = 0;  // what fp32 ring allreduces would have sent so far
  // This rank's reduction-scheme state by tensor and field: error-feedback residuals, PowerSGD's
  // warm starts (comm::Reducer::schemeState(), a comm::SchemeState).
  std::map<std::string, std::map<std::string, std::vector<float>>> schemeState;
  // Adaptive rates (Note [Adaptive rates]): the plan in force (parameter to scheme spec), and
  // the compensated gradients captured so far of the window before the next plan.
  std::map<std::string, std::string> ratePlan;
  std::map<std::string, std::vector<float>> captured;
  int64_t capturedSteps = 0;
  uint64_t sentSincePlan = 0, stepsSincePlan = 0;  // for the next plan record's actual bytes
  // A split model (Note [Pipeline split]): the bytes this rank has sent across its cuts so far
  // (activations forward, their gradients backward), and what fp32 would have sent.
  uint64_t cutWireBytes = 0, cutFp32Bytes = 0;
  int64_t skippedSteps = 0;  // updates skipped for non-finite gradients (train.skip_nonfinite)
  std::vector<double> metricsWindow;  // the open metrics window (MetricsWindow::sums), if any
  double wallSeconds = 0.0;           // the run's training seconds up to here (Note [Metrics log])
  at::Tensor rngState;                // torch's default CPU generator
  // The type of device the run trained on ("cpu", "cuda"; empty in older checkpoints): a resume
  // on another one says that its arithmetic differs (Note [Training device]).
  std::string device;
};

// Note [Checkpoints]
// Every rank writes its own file, <dir>/ckpt-<step, 10 digits>.rank<r>.ckpt, because the
// error-feedback residuals differ per rank. A file is written atomically (Note [Atomic writes] in
// core/run/files.h), so a crash leaves either the old set of checkpoints or the new one, never a
// torn file. Old checkpoints are pruned only once every rank has written the new step
// (saveReplicaCheckpoint), so no single crash leaves the ranks without a common step; --resume
// takes the newest step that every rank holds intact (commonResumeStep).
//
// The file is cdl's own container of named arrays (format 4; little-endian, Note [Byte order]):
//
//   char magic[8]  "CDLCKPT4"
//   entries, back to back, each:
//     u16  nameBytes 1..1024, then the name
//     u8   type      0 float32, 1 float64, 2 int64, 3 uint8
//     u8   dims      0..8, then shape[dims] as varints (LEB128, as in Note [Coded model file])
//     the elements, row-major: product(shape) x the type's width bytes
//   u64  xxhash64 of everything above
//   char magic[8]  "CDLCKPT4"
//
// The entries: "meta" (int64[15]: format, step, epoch, batch in epoch, world size, rank, config
// hash, wire bytes, fp32 wire bytes, cut wire bytes, cut fp32 bytes, skipped steps, captured
// steps, bytes and steps since the last plan), "param/<name>" and "buffer/<name>" for each of the
// model's tensors, "optim/<parameter>/<field>" for the optimizer's (SGD's momentum_buffer; Adam's
// step, exp_avg, exp_avg_sq, max_exp_avg_sq), "scheme/<tensor>/<field>" for the reduction
// schemes' state, "plan/<tensor>" (the scheme spec as text) and "captured/<tensor>" for adaptive
// rates, "wall_seconds" (float64, a scalar), and the optional "metrics_window", "rng" and
// "device" (the device type as text; the tensors are host bytes whatever it says). The
// optimizer's options are not stored: they follow the config, whose hash must match. The hash is
// checked before anything else is read, so a corrupt file is refused by name; then every field is
// checked against the bytes that are left (a shape can claim no more than the file holds), and a
// file whose arrays do not fit the model and optimizer in type, shape or name is refused naming the
// entry. No byte of a checkpoint reaches LibTorch's deserializers.

// Writes a checkpoint and returns its path; throws cdl::Error naming the path on any failure
// (the earlier checkpoints are untouched then). Removes nothing.
std::string saveCheckpoint(const std::string& dir, const torch::nn::Module& model,
                           const torch::optim::Optimizer& optimizer, const TrainState& state);

// The key of parameter p's state in torch::optim::Optimizer::state().
void* optimizerStateKey(const at::Tensor& p);

// Removes this rank's checkpoints in dir beyond the newest `keep`.
void pruneCheckpoints(const std::string& dir, int rank, int64_t keep);

// Empty when the checkpoint file is intact (its content hash matches), else what is wrong with it.
std::string checkpointProblem(const std::string& path);

// The steps of this rank's checkpoints in dir, oldest first (empty when there are none).
std::vector<int64_t> checkpointSteps(const std::string& dir, int rank);
std::string checkpointPath(const std::string& dir, int64_t step, int rank);
// ".ckpt", what every checkpoint file name ends with.
extern const char* const kCheckpointSuffix;

// Loads a checkpoint into model and optimizer (which must have the same structure) and returns its
// TrainState. A missing, truncated or corrupt file, or one whose tensors do not fit the model, is
// a cdl::Error naming the file.
TrainState loadCheckpoint(const std::string& path, torch::nn::Module& model,
                          torch::optim::Optimizer& optimizer);

// Loads only the model's parameters and buffers from a checkpoint (for export and inspection);
// errors as loadCheckpoint.
void loadCheckpointWeights(const std::string& path, torch::nn::Module& model);

}  // namespace cdl::core
