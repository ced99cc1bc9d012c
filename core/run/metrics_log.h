#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/cdl/cdl_report.h"
#include "core/config/config.h"
#include "core/run/files.h"

namespace cdl::comm {
struct PlanReport;
}

namespace cdl::core {

struct TrainState;

// The test accuracies whose first reach summary.json times (time_to_accuracy).
inline constexpr double kAccuracyTargets[] = {0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99};

// fp32 / wire: how many times fewer bytes were sent than fp32 ring allreduces would have sent;
// 1.0 when nothing was sent. The one definition behind every compression ratio cdl reports.
double compressionRatio(uint64_t fp32Bytes, uint64_t wireBytes);

// Note [Step times]
// Where a step's wall time goes on one rank, in seconds. On the training thread, one after
// another: data (making the batch), compute (forward and backward; the reducer's gradient hooks
// run inside it), wait (the reducer's finalize(): the communication backward did not hide, and
// the decoding left after it) and optimizer (the update); step is their whole, from the batch to
// the update. On the reducer's communication thread, overlapping compute and wait: encode
// (encoding and error feedback), comm (waiting on collectives) and decode (decoding and summing),
// as the reducer counts them (comm::ReducerStepStats). A split model's stage counts its waits
// for the neighbouring stages' activations and gradients in compute (they happen inside its
// passes) and the cut messages still in flight after the reducer in wait.
struct StepTimes {
  double data = 0.0, compute = 0.0, wait = 0.0, optimizer = 0.0, step = 0.0;
  double encode = 0.0, comm = 0.0, decode = 0.0;
  StepTimes& operator+=(const StepTimes& o);
};

// What one training step on this rank yields for the metrics.
struct StepMetrics {
  double lr = 0.0;              // the learning rate the step used
  double loss = 0.0;            // mean cross-entropy of this rank's batch (before the update)
  double correct = 0.0;         // examples of the batch the model classified right
  int64_t count = 0;            // examples in the batch
  uint64_t wireBytes = 0;       // gradient bytes this rank sent in the step
  uint64_t fp32Bytes = 0;       // what fp32 ring allreduces would have sent
  double weightBits = 0.0;      // CDL: bits per weight of the step's forward pass
  double activationBits = 0.0;  // CDL: bits per activation element
  // A split model (Note [Pipeline split]): what this rank sent across its cuts.
  uint64_t cutWireBytes = 0, cutFp32Bytes = 0;
  uint64_t cutForwardBytes = 0, cutForwardElements = 0;    // activations
  uint64_t cutBackwardBytes = 0, cutBackwardElements = 0;  // their gradients
  int64_t microBatches = 0;  // micro-batches whose activations this rank sent
  int64_t skipped = 0;       // 1 when the update was skipped (non-finite gradients)
  StepTimes times;           // Note [Step times]
};

// What a run yields (train() returns it; summary.json holds it).
struct TrainResult {
  bool finished = false;  // false when stopped early by stopAfterSteps
  int64_t steps = 0;
  int64_t epochs = 0;  // epochs completed
  double testAccuracy = 0.0;
  double testLoss = 0.0;
  double wallSeconds = 0.0;  // training seconds, counted across resumes (Note [Metrics log])
  // Rank 0: (target, wall seconds) for each of kAccuracyTargets the test accuracy reached.
  std::vector<std::pair<double, double>> timeToAccuracy;
  uint64_t wireBytes = 0;      // gradient bytes this rank sent over the whole run
  uint64_t fp32WireBytes = 0;  // what ring allreduces of fp32 gradients would have sent
  // A split model: the bytes every rank of the job sent across the cuts over the whole run
  // (activations and their gradients), and what fp32 tensors would have taken.
  uint64_t cutWireBytes = 0, cutFp32Bytes = 0;
  int64_t skippedSteps = 0;  // updates skipped for non-finite gradients (train.skip_nonfinite)
  // Note [Stop signals]: the ranks that were asked to stop (0: the run was not stopped so), and
  // the signal this rank got (0: none, the stop came from another rank).
  int stopRanks = 0;
  int stopSignal = 0;
  std::string runDir;
  // With TrainOptions::keepStepTimes: this rank's times of each step this call ran, in order
  // (Note [Step times]).
  std::vector<StepTimes> stepTimes;
  // A CDL model (cdl.mode): its weights' mean entropy and its coded size after the last epoch.
  bool cdl = false;
  double modelBitsPerWeight = 0.0;
  uint64_t modelCodedBytes = 0;
};

// The sums of a logging window (the steps since the last step record) on one rank.
struct MetricsWindow {
  double loss = 0.0;  // sum of loss * count
  double correct = 0.0;
  double count = 0.0;
  uint64_t wireBytes = 0;
  uint64_t fp32Bytes = 0;
  int64_t steps = 0;
  double weightBits = 0.0, activationBits = 0.0;  // CDL: of the window's last step
  double cutForwardBytes = 0, cutForwardElements = 0, cutBackwardBytes = 0, cutBackwardElements = 0,
         microBatches = 0;
  int64_t skipped = 0;  // updates skipped for non-finite gradients
  // The window's timed steps and their times (Note [Step times]). They are not part of sums(): a
  // resumed run's first record times only the steps since the resume.
  StepTimes times;
  int64_t timedSteps = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  void add(const StepMetrics& m);
  // Its sums as numbers (checkpoints carry the open window, so a resumed run writes the records
  // the uninterrupted run would have) and back; a vector of another length is a cdl::Error.
  std::vector<double> sums() const;
  void setSums(const std::vector<double>& v);
};

// Note [Metrics log]
// Rank 0 appends one JSON object per line to <run folder>/metrics.jsonl:
//   {"kind":"step", step, epoch, lr, train_loss, train_accuracy, samples_per_s,
//    wire_mb_per_step, compression_ratio, wall_s, ms}   every log.every_steps steps and at the
//    last one; the loss and accuracy are over every rank's examples of the window, the bytes and
//    ms this rank's (ms: {data, compute, wait, optimizer, step, encode, comm, decode}, the mean
//    milliseconds per timed step of the window, Note [Step times]; absent when none was timed);
//   {"kind":"epoch", epoch, step, test_loss, test_accuracy, wall_s}   after each epoch's
//    evaluation;
//   {"kind":"plan", step, feasible, budget, error, uniform_error, bytes, uniform_bytes, seconds,
//    actual_bytes, layers: [{name, scheme, error, bytes, uniform_error, uniform_bytes}]}   at
//    every re-plan of the adaptive rates (bytes: predicted wire bytes per step of this rank's
//    planned layers; actual_bytes: what the steps since the previous plan sent, every tensor),
//    with wall_s too.
// wall_s is the run's training time so far in seconds, on rank 0's clock, counted across resumes:
// a checkpoint keeps the seconds up to it, and a resumed run goes on from there (the time lost
// after that checkpoint, and between the crash and the resume, is not counted).
// A text set's records count tokens and add bits per token (setText). A CDL model's step records
// add weight_bits and activation_bits (the rates of the window's last step). A split model's add,
// over every rank and cut of the window, cut_forward_bytes and cut_backward_bytes (per micro-batch
// and cut: the activation, and its gradient, length prefixes included) and cut_forward_bits and
// cut_backward_bits (per element). A step record of a window with updates skipped for non-finite
// gradients has skipped_steps. A CDL model's epoch records carry a "cdl" object: bits_per_weight,
// coded_bits_per_weight, model_coded_bytes, and per quantized weight and activation its bits, step
// and entropy. A finished run also gets summary.json (summaryJson), whose time_to_accuracy gives,
// for each of kAccuracyTargets that an epoch's test accuracy reached, the wall_s of the first epoch
// record that reached it, e.g. {"0.85": 31.2, "0.90": 64.0}. The other ranks take part in the sums
// and write nothing.
class MetricsLog {
 public:
  // Rank 0 opens path for appending and draws a progress bar of totalSteps on stderr when
  // progressBar is set, else logs a line per step record. A run resumed at step resumedStep (>= 0)
  // continues the file from there: records of later steps (written after its checkpoint) and a
  // torn last line are dropped first, through an atomic rewrite, so none is duplicated.
  MetricsLog(comm::Communicator& comm, const std::string& path, bool progressBar,
             int64_t totalSteps, int64_t resumedStep = -1);
  ~MetricsLog();

  // Adds a step to the current window.
  void addStep(const StepMetrics& m);
  // The run's training seconds so far (wall_s).
  double elapsed() const;
  // Puts the open window and the seconds so far into a checkpoint's state, and takes them back
  // from a resumed run's.
  void saveTo(TrainState& state) const;
  void resumeFrom(const TrainState& state);
  // Rank 0: each target of kAccuracyTargets reached so far, with the wall_s it was first reached
  // at (a resumed run's from the records it kept).
  const std::vector<std::pair<double, double>>& timeToAccuracy() const { return reached_; }
  // Collective: sums the window over the ranks, writes the step record of `step` (the last of
  // the window, in `epoch`, at learning rate lr), shows it, and starts a new window.
  void writeStep(int64_t step, int64_t epoch, double lr);
  // Writes the epoch record (rank 0; no collective), with a CDL model's report when given, and
  // notes the accuracy targets it reaches.
  void writeEpoch(int64_t epoch, int64_t step, double testLoss, double testAccuracy,
                  const CdlReport* cdl = nullptr);
  // Writes a re-plan of the adaptive rates (rank 0; no collective) and shows it as a table.
  void writePlan(const comm::PlanReport& plan);
  // Step records of a CDL model carry the rates; those of a split model the cuts' traffic.
  void setCdl(bool on) { cdl_ = on; }
  // A text set's records (Note [Text data]) count tokens: with tokensPerExample > 0, step records
  // add tokens_per_s and train_bpc, epoch records test_bpc (bits per token: the loss / ln 2), and
  // samples_per_s counts examples of that many tokens.
  void setText(int64_t tokensPerExample) { tokensPerExample_ = tokensPerExample; }
  void setSplit(bool on) { split_ = on; }

 private:
  class Progress;
  comm::Communicator& comm_;
  std::unique_ptr<AppendFile> file_;  // rank 0 only
  std::unique_ptr<Progress> progress_;
  int64_t totalSteps_;
  MetricsWindow window_;
  std::chrono::steady_clock::time_point begun_ = std::chrono::steady_clock::now();
  double before_ = 0.0;  // the seconds of the run before begun_ (a resumed run's)
  std::vector<std::pair<double, double>> reached_;
  bool cdl_ = false;
  int64_t tokensPerExample_ = 0;
  bool split_ = false;
};

// The text of summary.json for a finished run of cfg on `ranks` ranks.
std::string summaryJson(const Config& cfg, const TrainResult& result, int ranks);

}  // namespace cdl::core
