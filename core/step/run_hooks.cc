#include "core/step/run_hooks.h"

#include <tuple>

#include "comm/reduce/adaptive_rates.h"
#include "comm/reduce/reducer.h"

namespace cdl::core {

void AdaptiveRatesHook::afterStep(int64_t stepsDone, const StepTimes& times, MetricsLog& metrics) {
  const comm::StepTiming timing{times.compute, times.wait, times.step};
  if (auto plan = rates_.afterStep(static_cast<uint64_t>(stepsDone), timing)) {
    metrics.writePlan(*plan);
  }
}

void AdaptiveRatesHook::save(TrainState& state) const {
  state.ratePlan = rates_.plan();
  state.captured = reducer_.captured();
  state.capturedSteps = reducer_.capturedSteps();
  std::tie(state.sentSincePlan, state.stepsSincePlan) = rates_.sinceLastPlan();
}

void AdaptiveRatesHook::restoreBeforeSchemes(const TrainState& loaded) {
  rates_.restore(loaded.ratePlan, static_cast<uint64_t>(loaded.step),
                 {loaded.sentSincePlan, loaded.stepsSincePlan});
}

void AdaptiveRatesHook::restoreAfterSchemes(const TrainState& loaded) {
  reducer_.setCaptured(loaded.captured, loaded.capturedSteps);
}

}  // namespace cdl::core
