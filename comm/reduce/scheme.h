#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/reduce/compressed_allreduce.h"
#include "comm/reduce/scheme_spec.h"
#include "comm/transport/communicator.h"

namespace cdl::comm {

// One tensor of a bucket, as its scheme sees it.
struct BucketTensor {
  std::string name;
  int index = 0;       // the tensor's registration index (keys PowerSGD's initial factors)
  int64_t offset = 0;  // where its elements start in the bucket's flat buffer
  int64_t rows = 0;    // the tensor as a matrix: its first dimension ...
  int64_t cols = 0;    // ... by the product of the others (a scalar is 1 x 1)
  int64_t numel() const { return rows * cols; }
};

// What schemes keep between steps, for checkpoints: per tensor name, named float vectors
// ("residual": the error-feedback residual; "q": PowerSGD's warm start).
using TensorState = std::map<std::string, std::vector<float>>;
using SchemeState = std::map<std::string, TensorState>;

struct SchemeOptions {
  bool errorFeedback = true;    // keep what compression lost and add it to the next step
  uint64_t seed = 0;            // rounding streams and PowerSGD's factors derive from it
  double timeoutSeconds = 0.0;  // per collective; zero or less: CDL_COMM_TIMEOUT
  // The pipeline segment of a summable payload codec (Note [Pipelined scatter-reduce]).
  int64_t segmentBytes = kDefaultSegmentBytes;
};

// Note [Reduction schemes]
// A scheme owns the math of reducing one bucket of gradients (c10d's comm hook); the Reducer owns
// the buckets, their order and the threads (Note [Reducer]). Two schemes exist: payload codecs
// through the compressed allreduce with error feedback (Note [Compressed allreduce]), and
// PowerSGD, tensor by tensor (Note [PowerSGD allreduce]). A scheme is made for one bucket's
// tensors and keeps their state; the state leaves and enters through saveState/loadState, so
// checkpoints need not know which scheme ran. A rate planner changes how a layer is reduced by
// giving it another scheme or spec.
class ReductionScheme {
 public:
  virtual ~ReductionScheme() = default;

  virtual const SchemeSpec& spec() const = 0;

  // Averages data (the bucket's tensors, laid out as given at construction) over comm's ranks in
  // place and sets *stats to what it cost. bucket and step key the rounding streams. Every rank
  // calls it for the same bucket at the same step, from one thread.
  virtual void reduce(Communicator& comm, float* data, int bucket, uint64_t step,
                      AllreduceStats* stats) = 0;

  // Adds the state of each of the bucket's tensors to *out (every field, also before any step).
  virtual void saveState(SchemeState* out) const = 0;
  // Throws cdl::Error naming the tensor and field unless `in` holds a valid state for every
  // tensor of the bucket (fields, sizes, finite values); changes nothing.
  virtual void checkState(const SchemeState& in) const = 0;
  // Replaces the state with in's, which checkState accepted.
  virtual void loadState(const SchemeState& in) = 0;
};

// Note [Scheme changes]
// A planner moves a tensor from one scheme to another between steps; its state moves with it:
// the error-feedback residual stays (every scheme keeps one per tensor, or none without error
// feedback), PowerSGD's warm-start Q stays while the rank does, loses its last columns when the
// rank drops, and gains the columns a fresh draw of the tensor's seed would have when it rises;
// a payload scheme keeps no Q. Adapts `state` (one tensor's, as saveState wrote it) from `from` to
// `to`; cols is the tensor's column count and seed the one its PowerSGD factors are drawn from.
void adaptSchemeState(const SchemeSpec& from, const SchemeSpec& to, int64_t cols, uint64_t seed,
                      TensorState& state);
// The seed of a tensor's PowerSGD factors (registration index `index`).
uint64_t powerSgdSeed(uint64_t seed, int index);

// The scheme of spec for a bucket of these tensors (ascending, non-overlapping offsets).
std::unique_ptr<ReductionScheme> makeScheme(const SchemeSpec& spec,
                                            std::vector<BucketTensor> tensors,
                                            const SchemeOptions& options);

}  // namespace cdl::comm
