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

#include "comm/codec.h"
#include "comm/communicator.h"
#include "comm/compressed_allreduce.h"
#include "comm/powersgd.h"

namespace cdl::comm {

struct ReducerOptions {
  int64_t bucketBytes = int64_t{25} << 20;      // DDP's default bucket size
  int64_t firstBucketBytes = int64_t{1} << 20;  // small first bucket: communication starts early
  CodecSpec codec;                              // the default codec ("none": plain fp32)
  // (glob pattern over parameter names, codec) pairs; the first match wins over the default.
  std::vector<std::pair<std::string, CodecSpec>> overrides;
  // Tensors with fewer elements (biases, norms) go uncompressed, whatever their codec.
  int64_t minCompressNumel = 4096;
  bool errorFeedback = true;
  uint64_t seed = 0;            // stochastic rounding streams derive from (seed, step, bucket)
  double timeoutSeconds = 0.0;  // per collective; zero or less: CDL_COMM_TIMEOUT
};

// What one step's gradient reduction cost this rank.
struct ReducerStepStats {
  uint64_t wireBytes = 0;
  uint64_t fp32Bytes = 0;
  double encodeSeconds = 0.0, commSeconds = 0.0, decodeSeconds = 0.0;
  std::vector<AllreduceStats> buckets;
};

// Note [Reducer]
// Averages the gradients of a set of named parameters across ranks while backward runs. The
// parameters are laid out, in reverse registration order (roughly the order gradients appear),
// into flat fp32 buckets of one codec each; a hook on every parameter copies its gradient into
// its bucket, and a bucket whose gradients are all in is reduced on the communication thread
// (Note [Compressed allreduce]) while backward goes on. Buckets are always issued in index order,
// from that one thread, so every rank issues the same collectives in the same order whatever
// order its gradients arrive in. finalize() treats parameters that got no gradient this step as
// zero, waits, and writes the averaged gradients into each parameter's grad.
//
// Parameters whose codec is powersgd are reduced one by one, as rows x cols matrices (the first
// dimension by the rest, like PyTorch's PowerSGD hook), with a PowerSgdState each; vectors and
// matrices too small to gain go through a plain allreduce (Note [PowerSGD allreduce]).
//
// At construction every rank compares the parameter names, shapes and codecs with rank 0's; a
// difference is an error naming the first differing tensor and rank. Error-feedback residuals are
// kept per tensor and can be saved and restored (checkpoints).
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

  // Statistics of the last finalized step.
  const ReducerStepStats& lastStats() const { return stats_; }

  // The codec chosen for a parameter (after overrides and the size threshold).
  const CodecSpec& codecOf(const std::string& name) const;
  int numBuckets() const { return static_cast<int>(buckets_.size()); }

  // Error-feedback residuals by parameter name (empty vectors when feedback is off). A parameter
  // reduced with PowerSGD also has its warm-start Q under "<name>" + kPowerSgdQSuffix (empty
  // before its first compressed step).
  std::map<std::string, std::vector<float>> errorFeedbackState() const;
  // Restores a state saved by errorFeedbackState(); throws naming a missing, unknown, wrongly
  // sized or non-finite tensor, and then leaves the current state as it was.
  void restoreErrorFeedback(const std::map<std::string, std::vector<float>>& state);

  static constexpr const char* kPowerSgdQSuffix = "#powersgd.q";

 private:
  struct Param {
    std::string name;
    at::Tensor tensor;
    CodecSpec codec;
    int bucket = 0;
    int64_t offset = 0;  // in the bucket
    int64_t numel = 0;
    bool ready = false;
    bool hooked = false;
    unsigned hook = 0;
    std::unique_ptr<PowerSgdState> powerSgd;  // when codec is powersgd
  };
  struct Bucket {
    CodecSpec codec;
    std::vector<int> params;
    std::vector<float> data, residual;
    int pending = 0;
  };

  void layOut();
  void checkConsistency();
  void onGradient(int index, const at::Tensor& grad);
  void markReadyLocked(int index);
  void commLoop();
  void reduceBucket(int b, AllreduceStats* st);

  std::shared_ptr<Communicator> comm_;
  ReducerOptions options_;
  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  std::map<std::string, int> byName_;
  std::vector<std::unique_ptr<Codec>> codecs_;  // by CodecId

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> bucketReady_;
  int nextBucket_ = 0;  // the comm thread's position in this step
  bool stepDone_ = false;
  bool stop_ = false;
  uint64_t step_ = 0;
  std::exception_ptr error_;
  ReducerStepStats stats_, running_;
  std::thread thread_;
};

}  // namespace cdl::comm
