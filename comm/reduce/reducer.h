#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "comm/reduce/compressed_allreduce.h"
#include "comm/reduce/scheme.h"
#include "comm/transport/communicator.h"

namespace cdl::comm {

struct ReducerOptions {
  int64_t bucketBytes = int64_t{25} << 20;      // DDP's default bucket size
  int64_t firstBucketBytes = int64_t{1} << 20;  // small first bucket: communication starts early
  SchemeSpec scheme;                            // the default scheme ("none": plain fp32)
  // (glob pattern over parameter names, scheme) pairs; the first match wins over the default.
  std::vector<std::pair<std::string, SchemeSpec>> overrides;
  // Tensors with fewer elements (biases, norms) go uncompressed, whatever their scheme.
  int64_t minCompressNumel = 4096;
  bool errorFeedback = true;
  // Check every gradient for NaN and infinity as it arrives (Note [Non-finite gradients]).
  bool checkFinite = true;
  uint64_t seed = 0;            // stochastic rounding streams derive from (seed, step, bucket)
  double timeoutSeconds = 0.0;  // per collective; zero or less: CDL_COMM_TIMEOUT
};

// What one step's gradient reduction cost this rank.
struct ReducerStepStats {
  uint64_t wireBytes = 0;
  uint64_t fp32Bytes = 0;
  double encodeSeconds = 0.0, commSeconds = 0.0, decodeSeconds = 0.0;
  std::vector<AllreduceStats> buckets;
  // Note [Non-finite gradients]: the ranks whose gradients held NaN or infinity this step (the
  // same count on every rank), and the first such parameter of this rank ("" when none).
  int nonFiniteRanks = 0;
  std::string nonFinite;
};

// Note [Reducer]
// Averages the gradients of a set of named parameters across ranks while backward runs. The
// parameters are laid out into flat fp32 buckets of one reduction scheme each (Note [Bucket
// layout]); a hook on every parameter copies its gradient into its bucket, and a bucket whose
// gradients are all in is reduced by its scheme (Note [Reduction schemes]) on the communication
// thread while backward goes on. Buckets are always issued in index order,
// from that one thread, so every rank issues the same collectives in the same order whatever
// order its gradients arrive in. finalize() treats parameters that got no gradient this step as
// zero, waits, and writes the averaged gradients into each parameter's grad. The parameters
// share one device; the buckets live in host memory, so a GPU's gradients are copied there as
// they arrive and back once averaged (Note [Training device]).
//
// Parameters whose scheme is powersgd are reduced one by one, as rows x cols matrices (the first
// dimension by the rest, like PyTorch's PowerSGD hook), with a PowerSgdState each; vectors and
// matrices too small to gain go through a plain allreduce (Note [PowerSGD allreduce]).
//
// Note [Non-finite gradients]
// With checkFinite, each gradient is checked as its hook copies it into the bucket. A parameter
// whose gradient holds NaN or infinity is recorded and enters the bucket as zeros, so that every
// collective and codec still completes on every rank; finalize() then sums a flag over the ranks
// (one 1-float allreduce per step), and every rank's stats say how many ranks saw one. The trainer
// fails the step naming the parameter and the step, or skips the update on every rank alike.
//
// At construction every rank compares the parameter names, shapes and schemes with rank 0's
// (requireSameOnEveryRank); a difference is an error naming the first differing tensor and rank.
// The schemes' state (error-feedback residuals, PowerSGD's warm starts) is kept per tensor and can
// be saved and restored (checkpoints).
class Reducer {
 public:
  Reducer(std::shared_ptr<Communicator> comm,
          std::vector<std::pair<std::string, at::Tensor>> params, ReducerOptions options);
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Waits for every bucket of this step, rethrows a failure of any of them, and writes the
  // averaged gradients into the parameters' grad. Starts the next step.
  void finalize();

  // The number of finalized steps, which keys stochastic rounding; a resumed run sets it to the
  // step it continues from, so it rounds as the uninterrupted run would have. Only between steps.
  uint64_t step() const { return step_; }
  void setStep(uint64_t step);

  // Between steps: the coming steps' gradients arrive over this many backward passes (a
  // pipeline's micro-batches; 1 by default). A parameter's gradients are summed in the order they
  // arrive and its bucket is reduced after its last one.
  void setBackwardsPerStep(int n);

  // Statistics of the last finalized step.
  const ReducerStepStats& lastStats() const { return stats_; }

  // The scheme chosen for a parameter (after overrides and the size threshold).
  const SchemeSpec& schemeOf(const std::string& name) const;
  int numBuckets() const { return static_cast<int>(buckets_.size()); }

  // Every scheme's state, by parameter name (Note [Reduction schemes]): "residual" (empty when
  // error feedback is off) and, for PowerSGD, "q" (empty before its first compressed step).
  SchemeState schemeState() const;
  // Restores a state saved by schemeState(); throws naming a missing, unknown, wrongly sized or
  // non-finite tensor or field, and then leaves the current state as it was.
  void restoreSchemeState(const SchemeState& state);

  // The parameters whose scheme a planner may choose (those not below minCompressNumel), in
  // registration order, as rows x cols matrices (the first dimension by the rest).
  struct Plannable {
    std::string name;
    int64_t rows = 0, cols = 0;
  };
  std::vector<Plannable> plannable() const;

  // Collective, between steps. Gives the named parameters these schemes (the others keep
  // theirs) and lays the buckets out anew. State carries over (Note [Scheme changes]): residuals
  // stay with their tensor, PowerSGD's warm start too, truncated or padded when its rank changes.
  // Every rank must pass the same schemes; a difference is an error naming the tensor.
  void setSchemes(const std::map<std::string, SchemeSpec>& schemes);

  // While on, every step adds each plannable parameter's compensated gradient (its gradient
  // plus the error-feedback residual it is about to be compressed with) to a running sum.
  void setCapture(bool on);
  // The sums since capture last started, by parameter, and the number of steps summed.
  const std::map<std::string, std::vector<float>>& captured() const { return captured_; }
  int64_t capturedSteps() const { return capturedSteps_; }
  // Replaces the sums (a resumed run continues a window).
  void setCaptured(std::map<std::string, std::vector<float>> sums, int64_t steps);

 private:
  struct Param {
    std::string name;
    at::Tensor tensor;
    SchemeSpec scheme;
    int bucket = 0;
    int64_t offset = 0;  // in the bucket
    int64_t numel = 0;
    bool ready = false;
    int arrived = 0;  // gradients summed into the bucket this step
    bool hooked = false;
    unsigned hook = 0;
  };
  struct Bucket {
    std::vector<int> params;
    std::vector<float> data;
    std::unique_ptr<ReductionScheme> scheme;
    int pending = 0;
  };

  void layOut();
  void checkReplicas();
  void onGradient(int index, const at::Tensor& grad);
  void markReadyLocked(int index);
  void commLoop();
  void reduceBucket(int b, AllreduceStats* st);
  void captureBucket(int b);

  std::shared_ptr<Communicator> comm_;
  ReducerOptions options_;
  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  std::map<std::string, int> byName_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> bucketReady_;
  int nextBucket_ = 0;  // the comm thread's position in this step
  bool stepDone_ = false;
  bool stop_ = false;
  uint64_t step_ = 0;
  int backwardsPerStep_ = 1;
  std::string nonFinite_;  // the step's first parameter with a non-finite gradient
  std::exception_ptr error_;
  bool capture_ = false;
  std::map<std::string, std::vector<float>> captured_;
  int64_t capturedSteps_ = 0;
  ReducerStepStats stats_, running_;
  std::thread thread_;
};

}  // namespace cdl::comm
