#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "comm/reduce/rate_planner.h"
#include "comm/reduce/reducer.h"
#include "comm/reduce/scheme.h"
#include "comm/reduce/scheme_type.h"
#include "comm/transport/communicator.h"

namespace cdl::comm {

// Note [Adaptive rates]
// Layerwise-adaptive compression the L-GreCo way (Alimohammadi et al., MLSys'24), for every
// scheme family. After `warmupSteps` and then every `everySteps` steps, the Reducer captures each
// plannable tensor's error-feedback-compensated gradient over the `window` steps before (their
// mean); every candidate scheme is then applied to it for real: its error ||g - C(g)||_2 (qsgd and
// top-k encoded and decoded, PowerSGD's rank-r approximation after two power iterations from its
// seed) and its bytes on the wire per rank, from the actual coded size (scatter-reduce +
// allgather for summable codecs: 2 (W-1)/W of the payload; allgather for top-k: W-1 payloads;
// PowerSGD: its two fp32 allreduces of r (rows + cols) floats). The costs are averaged over the
// ranks (an allreduce), rank 0 solves the knapsack of Note [Rate planner] with the configured
// scheme (comm.codec, or an override) as each layer's default, and broadcasts the choice, so every
// rank applies the same plan bitwise; the Reducer switches schemes keeping their state (Note
// [Scheme changes]). A candidate that does not apply to a layer (a PowerSGD rank at or above the
// smaller dimension, a top-k density that keeps nothing) is skipped for it.
//
// With budget = kTime (Note [Time budget]) the plan is the least-error choice whose predicted
// exposed communication per step stays within (1 - overlap) times the step's compute (forward
// and backward; overlap 1: fully hidden). A candidate's predicted seconds are its wire bytes over
// the link rate plus its codec time; the exposed part of a plan's P seconds is P - H, where H is
// what the current plan's communication hid behind compute, measured: the communication thread's
// busy seconds per step (encoding, waiting on collectives, decoding) less the seconds the step
// waited for it after backward. So the planner's budget is H + (1 - overlap) x compute. The link
// rate is probed at each plan on the job's communicator: an allgather of 256 KiB from every rank
// against one of a byte (the latency cancels out; links change, so each plan probes again);
// the codec time as the candidate's measurement runs (one encode and decode of the
// tensor), the compute, exposed and busy seconds from the steps' times; all are means over the
// ranks (one allreduce with the costs), so every rank plans alike. A fast link buys the
// least-error candidates (accuracy first); on a slow one the plan compresses until the
// communication hides. The report says what was measured and predicted, and the next plan's
// report how the steps since went. A plan with no timed step before it (right after a resume)
// falls back to the error budget and says so.

struct AdaptiveOptions {
  enum class Budget { kError, kTime };
  Budget budget = Budget::kError;
  double overlap = 1.0;  // kTime: exposed communication <= (1 - overlap) x compute; in [0, 1]
  // kTime: > 0 takes this link rate (bytes per second) instead of the measured one.
  double linkBytesPerSecond = 0.0;
  double alpha = 1.0;
  int64_t warmupSteps = 100;
  int64_t everySteps = 200;
  int64_t window = 10;
  int buckets = 10000;
  // Every layer's default is the scheme the Reducer started it with (comm.codec, or an
  // override); the defaults are added to the candidates when missing.
  std::vector<SchemeSpec> candidates;
  // Whether the candidates were named one by one (each must then fit some layer) or are a
  // family's grid (whose members that fit no layer, such as PowerSGD ranks beyond every layer's
  // shape, are dropped).
  bool named = false;
};

// The candidates of the named families ("qsgd", "topk", "powersgd"), each its scheme type's grid
// (Note [Scheme registry]): qsgd bits 2..8 x buckets {128, 512, 1024, 4096} x stochastic or
// nearest rounding; top-k densities 0.1% .. 10%, 7 log-spaced; PowerSGD ranks {1, 2, 4, 8, 16,
// 32}. An unknown family or an empty list is a cdl::Error naming `key`.
std::vector<SchemeSpec> candidateGrid(const std::vector<std::string>& families,
                                      const SchemeSpec& uniform, const std::string& key);

// The family of a scheme ("qsgd", "topk", "powersgd", or the codec's name).
std::string familyOf(const SchemeSpec& spec);

// What one candidate costs one tensor (CandidateCost, through its scheme type); not valid when it
// does not apply to the tensor and is not the layer's default.
CandidateCost measureCandidate(const float* g, int64_t rows, int64_t cols, const SchemeSpec& spec,
                               int ranks, bool isDefault = false);

// One re-plan, for the metrics and the log.
struct LayerChoice {
  std::string name;
  std::string scheme;  // the chosen scheme's spec
  double error = 0.0;  // measured, of the chosen and of the uniform scheme
  int64_t bytes = 0;   // predicted wire bytes per step, of the chosen and of the uniform scheme
  double uniformError = 0.0;
  int64_t uniformBytes = 0;
};
struct PlanReport {
  uint64_t step = 0;
  std::string budgetKind = "error";  // "error", "time", or "error (no timed steps)"
  bool feasible = false;
  double budget = 0.0, error = 0.0, uniformError = 0.0;
  int64_t bytes = 0, uniformBytes = 0;
  double seconds = 0.0;  // measuring, planning and applying
  // Time budget: what was measured (means per step and rank) and predicted.
  double linkBytesPerSecond = 0.0;  // probed (or given); infinite: too fast to tell
  double computeSeconds = 0.0;      // forward and backward
  double hiddenSeconds = 0.0;       // the current plan's communication hidden behind compute
  double predictedSeconds = 0.0, uniformPredictedSeconds = 0.0;  // communication per step
  // The steps since the previous plan, as they really went (this rank; zero when untimed).
  double actualStepSeconds = 0.0, actualExposedSeconds = 0.0;
  // What the steps since the previous plan really sent, per step (this rank, every tensor,
  // the uncompressed small ones too), to set against the previous plan's prediction.
  int64_t actualBytes = 0;
  std::vector<LayerChoice> layers;
};

// One step's times for the time budget: its forward and backward seconds, how long it waited for
// the reduction after backward (exposed communication), and the whole step.
struct StepTiming {
  double compute = 0.0, exposed = 0.0, step = 0.0;
};

// Drives the Reducer's schemes through training. Every rank holds one and calls it after every
// finalized step, in step order.
class AdaptiveRates {
 public:
  AdaptiveRates(Reducer& reducer, Communicator& comm, AdaptiveOptions options);

  // Collective when a plan is due. `steps` is the number of steps finalized so far; turns
  // capturing on for the window before the next plan, and at a plan measures, plans and applies
  // it, returning its report.
  // `timing` is the step's (StepTiming); the time budget plans with them.
  std::optional<PlanReport> afterStep(uint64_t steps, const StepTiming& timing = {});

  // The current plan (parameter name to scheme spec; empty before the first), for checkpoints.
  const std::map<std::string, std::string>& plan() const { return plan_; }
  // Bytes sent and steps taken since the last plan (for its successor's actual_bytes).
  std::pair<uint64_t, uint64_t> sinceLastPlan() const { return {sentSincePlan_, stepsSincePlan_}; }
  // Restores a plan (and the Reducer's schemes) and the counts of sinceLastPlan() when resuming
  // at `steps`; collective.
  void restore(const std::map<std::string, std::string>& plan, uint64_t steps,
               std::pair<uint64_t, uint64_t> since);

 private:
  bool planDue(uint64_t steps) const;
  // Whether the step after `steps` finalized ones lies in the window of a plan.
  bool measuring(uint64_t steps) const;
  int defaultIndex() const;
  PlanReport replan(uint64_t steps);
  // The costs of every candidate for every layer (means over the ranks), and in *timing the
  // ranks' mean compute seconds per step and link rate.
  struct Timing {
    double compute = 0.0, exposed = 0.0, busy = 0.0, linkBytesPerSecond = 0.0;
  };
  std::vector<std::vector<RateCandidate>> measure(std::vector<Reducer::Plannable>& layers,
                                                  Timing* timing);
  RatePlan plan(std::vector<std::vector<RateCandidate>>& costs, const Timing& timing,
                PlanReport* report) const;

  Reducer& reducer_;
  Communicator& comm_;
  AdaptiveOptions options_;
  std::vector<int> defaults_;  // per plannable layer: its default's candidate index
  uint64_t sentSincePlan_ = 0, stepsSincePlan_ = 0;
  // The steps timed since the previous plan (not in checkpoints: times are not exact anyway).
  struct TimedSteps {
    uint64_t steps = 0;
    double compute = 0.0, exposed = 0.0, step = 0.0, busy = 0.0;
  };
  TimedSteps timed_;
  std::map<std::string, std::string> plan_;
};

}  // namespace cdl::comm
