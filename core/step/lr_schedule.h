#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/base/error.h"

namespace cdl::core {

// The learning rate of step `step` (0-based) of `total`: a linear warm-up from lr / warmup to lr
// over the first `warmup` steps, then "constant" lr, "cosine" decay from lr to 0 at `total`, or
// "step": lr * gamma^floor((step - warmup) / every).
inline double scheduledLr(const std::string& schedule, double lr, int64_t step, int64_t total,
                          int64_t warmup, int64_t every = 1, double gamma = 1.0) {
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / warmup;
  const int64_t s = step - warmup, span = total - warmup;
  if (schedule == "constant") return lr;
  if (schedule == "cosine") {
    if (span <= 0) return lr;
    const double t = std::min(1.0, static_cast<double>(s) / static_cast<double>(span));
    return 0.5 * lr * (1.0 + std::cos(M_PI * t));
  }
  if (schedule == "step") {
    CDL_CHECK(every >= 1, "step schedule: step_every must be >= 1");
    return lr * std::pow(gamma, static_cast<double>(s / every));
  }
  CDL_THROW("unknown learning-rate schedule '", schedule, "' (expected constant, cosine or step)");
}

}  // namespace cdl::core
