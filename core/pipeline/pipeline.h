#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/codec/spec.h"
#include "comm/transport/communicator.h"
#include "core/cdl/cdl_quantizer.h"
#include "core/cdl/cdl_report.h"
#include "core/config/config.h"
#include "core/data/data.h"
#include "core/run/metrics_log.h"
#include "core/step/train_step.h"
#include "kernels/base/bytes.h"

namespace cdl::core {

class Net;
class CdlTraining;

// Note [Pipeline split]
// A model split across ranks: a 2-D grid of pipeline stages x data-parallel replicas. World
// rank r is stage r % stages of replica r / stages, so the stages of one replica are neighbours
// (on one host where the launcher places consecutive ranks together). Three communicators serve
// it: the world (run folder, metrics), the data-parallel group of the rank's stage (the
// gradient allreduce, batch-norm buffers, CDL activation histograms) and the pipeline group of
// its replica, whose rank is the stage (the coded tensors between stages). The model is a chain
// of segments (Net::segments); model.split.cut_after names the segments after which it is cut,
// and each stage holds, optimizes and checkpoints only its own segments' layers.
//
// A step is GPipe's fill and drain: the batch is cut into micro_batches parts; each goes forward
// through every stage, the activation at a cut crossing as a coded message, and then the parts
// go backward in reverse order, the gradient of each cut's activation crossing back. The
// parameters' gradients are summed over the parts (Reducer::setBackwardsPerStep) and averaged
// within the data-parallel group as before. Each part's loss is its summed cross-entropy over
// the whole batch's size, so the parts add up to the unsplit step's mean. A CDL model's rate
// term is the stages' own quantizers' sums over the whole model's element counts (one small
// allreduce over the pipeline group per step), so the stages' terms add up to the unsplit one.
//
// What crosses a cut forward is coded with model.split.activation_codec: a CDL model's
// activation indices (the quantizer the segment ends with) rANS-coded, so that lambda_a shrinks
// the traffic directly; or a payload codec (fp16, qsgd + rANS, ...). The gradients going back
// use model.split.gradient_codec. Error feedback does not apply to them: every step carries other
// examples, so a residual would be added to the gradient of a different example; stochastic
// rounding keeps the quantizers unbiased instead. Evaluation runs the test set forward through
// the same cuts with the same codec, as deployed split inference would. Batch normalization
// normalizes each micro-batch by its own statistics (as GPipe does), so a split run equals the
// unsplit one to floating-point tolerance only with one micro-batch or a model without it.
//
// A message is 8 bytes of length and then the bytes, on tag kForward (activations) or kBackward
// (gradients) between neighbouring stages. A stage that dies or stalls makes its neighbours'
// waits fail within CDL_COMM_TIMEOUT with an error naming the stage and the micro-batch.

struct ProcessGrid {
  std::shared_ptr<comm::Communicator> world;
  std::shared_ptr<comm::Communicator> data;  // this rank's stage, across the replicas
  std::shared_ptr<comm::Communicator> pipe;  // this rank's replica, across the stages (or null)
  int stages = 1;

  int stage() const { return world->rank() % stages; }
  int replica() const { return world->rank() / stages; }
  int replicas() const { return world->size() / stages; }
};

// The grid of an unsplit run: every rank one replica of the whole model.
ProcessGrid unsplitGrid(std::shared_ptr<comm::Communicator> world);

// Throws naming model.split.stages unless `ranks` is a multiple of `stages`.
void checkGridSize(int ranks, int64_t stages);

// In-process ranks as threads (for tests): grids[r] is world rank r's.
std::vector<ProcessGrid> makeLocalGrids(int ranks, int stages,
                                        const comm::CollectiveOptions& options = {});

// Collective over c: every rank's config must equal rank 0's (the slurm section aside, as in
// configHash). A difference is a cdl::Error on every rank naming the first differing rank, its
// stage (of rank 0's model.split.stages) and the key with both values.
void requireSameConfig(comm::Communicator& c, const Config& cfg);

// The segments [first, last) of every stage of `model` as model.split cuts it. Errors name the
// key: a cut_after count other than stages - 1, an unknown segment (listing the known ones), the
// last segment, or names out of order.
std::vector<std::pair<size_t, size_t>> stageSegments(const Net& model,
                                                     const Config::Model::Split& split);

// Segments [first, last) of `whole` as a model of their own: the segments' submodules registered
// under their names in `whole` (so parameter, buffer and quantizer names are the whole model's:
// checkpoints, reducer and codecs key on them), in whole's order. Its forward runs those
// segments, checking the input first when it starts at segment 0. It shares whole's tensors.
std::shared_ptr<Net> makeStageNet(std::shared_ptr<Net> whole, size_t first, size_t last);

// The codec of one cut in one direction.
class CutCodec {
 public:
  // `spec`: a codec spec, "auto" or "cdl" (activations only; `quantizer` is the one the cut's
  // segment ends with, empty without CDL). `key` names it in errors (the config key).
  CutCodec(const std::string& spec, Quantizer quantizer, const std::string& key);

  // x coded as a message: its shape, then the codec's payload (or the rANS-coded indices).
  // roundingKey selects stochastic rounding's stream.
  Bytes encode(const at::Tensor& x, uint64_t roundingKey) const;
  // The tensor of a message; every field is checked and an error names `what`.
  at::Tensor decode(const Bytes& message, const std::string& what) const;

  bool indices() const { return !quantizer_.is_empty(); }
  std::string describe() const;

 private:
  Quantizer quantizer_{nullptr};  // set when coding a CDL model's indices
  comm::CodecSpec spec_;
  std::unique_ptr<comm::Codec> codec_;
};

// What crossed this rank's cuts in one step.
struct CutStats {
  uint64_t wireBytes = 0;                            // messages sent, length prefixes included
  uint64_t fp32Bytes = 0;                            // the same tensors as fp32
  uint64_t forwardBytes = 0, forwardElements = 0;    // activations sent
  uint64_t backwardBytes = 0, backwardElements = 0;  // their gradients sent
  int64_t microBatches = 0;
};

// One rank's stage of a split model (Note [Pipeline split]): the schedule of its steps (Note
// [One training step]).
class Pipeline final : public StepSchedule {
 public:
  // `stageNet` is this rank's stage (makeStageNet of `whole` at the grid's stage).
  Pipeline(const Config& cfg, const ProcessGrid& grid, std::shared_ptr<Net> whole, Net& stageNet);
  ~Pipeline() override;

  // Collective over the pipeline group: the micro-batches' forward and backward passes through
  // the stages. The loss and accuracy are the last stage's (zero examples elsewhere).
  bool forwardBackward(const StepSetup& s, int64_t step, const at::Tensor& x, const at::Tensor& y,
                       StepMetrics& m) override;
  // Waits for the messages still in flight; adds what crossed this rank's cuts to m.
  void finish(StepMetrics& m) override;

  // Collective over the world: the test set through the stages, loss and accuracy of all.
  Evaluation evaluate(const Replica& r, const ImageSet& test) override;

  // Collective over the pipeline group: every stage's CDL report joined into the whole model's.
  CdlReport joinReports(const CdlReport& own) const override;

  const CutStats& lastStats() const { return stats_; }
  int stage() const { return stage_; }
  int stages() const { return stages_; }
  bool first() const { return stage_ == 0; }
  bool last() const { return stage_ + 1 == stages_; }
  bool logs(const Replica&) const override { return grid_.world->rank() == 0; }

 private:
  struct Outgoing;
  struct Parts;
  void forwardPart(const Replica& r, int64_t step, const at::Tensor& x, const at::Tensor& y,
                   int64_t k, Parts& p);
  void totalRates(Parts& p);
  void backwardPart(const Replica& r, int64_t step, int64_t k, Parts& p, StepMetrics& m);
  Bytes encode(const CutCodec& codec, const at::Tensor& x, uint64_t key,
               const std::string& what) const;
  void post(int toStage, Bytes message, uint64_t tag);
  Bytes receive(int fromStage, uint64_t tag, const std::string& what);
  void progress();
  void drain();

  ProcessGrid grid_;
  std::shared_ptr<Net> whole_;
  Net& net_;
  int stage_, stages_;
  int64_t microBatches_;
  uint64_t seed_;
  std::string cutIn_, cutOut_;  // the segment names of this stage's cuts ("" at the ends)
  std::unique_ptr<CutCodec> forwardOut_, forwardIn_, backwardOut_, backwardIn_;
  std::vector<std::unique_ptr<Outgoing>> outgoing_;
  CutStats stats_;
};

}  // namespace cdl::core
