#pragma once

#include <chrono>

namespace cdl {

// The monotonic clock every duration cdl reports is read from.
using Clock = std::chrono::steady_clock;

// Seconds from t0 to now.
inline double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace cdl
