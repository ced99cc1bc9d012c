#include "comm/transport/work.h"

#include <thread>

#include "kernels/base/error.h"
#include "kernels/base/knobs.h"

namespace cdl::comm {

void Work::finish(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    done_ = true;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

bool Work::completed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return true;
  }
  return poll();
}

void Work::wait() { wait(std::chrono::duration<double>(knobSeconds(kKnobCommTimeout))); }

bool Work::waitUntilDone(std::chrono::duration<double> timeout) {
  using Clock = std::chrono::steady_clock;
  // Zero or less means no limit, and so does one past what the clock's deadline can hold.
  const bool forever = !(timeout.count() > 0.0) || timeout.count() > kMaxKnobSeconds;
  const auto deadline = forever
                            ? Clock::time_point::max()
                            : Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
  if (polled()) {
    // Drive progress ourselves; between polls idle where the operation can (a millisecond at
    // most, so that polling goes on), else yield so that oversubscribed ranks still get the core.
    for (uint64_t spins = 0; !poll(); ++spins) {
      if (idle(std::chrono::milliseconds(1))) {
        if (!forever && Clock::now() >= deadline) return false;
        continue;
      }
      if ((spins & 255) == 0 && !forever && Clock::now() >= deadline) return false;
      std::this_thread::yield();
    }
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    if (forever) {
      cv_.wait(lock, [this] { return done_; });
    } else if (!cv_.wait_until(lock, deadline, [this] { return done_; })) {
      return false;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
  return true;
}

void Work::wait(std::chrono::duration<double> timeout) {
  if (waitUntilDone(timeout)) return;
  std::string who = missing();
  if (explain_) {
    const std::string peers = explain_();
    who += (who.empty() || peers.empty() ? "" : "; ") + peers;
  }
  abandon();
  CDL_THROW(what_, " did not complete within ", timeout.count(), " s",
            who.empty() ? std::string() : " (" + who + ")",
            "; a rank may have failed or skipped it (CDL_COMM_TIMEOUT sets the limit)");
}

void Work::sleepUntilDone(std::chrono::duration<double> timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return done_; });
}

void Work::finishAbandoned() {
  try {
    CDL_THROW(what_, " was abandoned before it completed");
  } catch (...) {
    finish(std::current_exception());
  }
}

bool Work::waitFor(std::chrono::duration<double> timeout) {
  return waitUntilDone(timeout.count() > 0.0 ? timeout : std::chrono::duration<double>(1e-9));
}

PhasedWork::PhasedWork(std::string what, std::vector<Phase> phases)
    : Work(std::move(what)), phases_(std::move(phases)) {
  std::lock_guard<std::mutex> lock(pollMu_);
  start();
}

void PhasedWork::start() {
  try {
    if (next_ < phases_.size()) pending_ = phases_[next_++]();
  } catch (...) {
    finished_ = true;
    finish(std::current_exception());
  }
}

bool PhasedWork::poll() {
  std::lock_guard<std::mutex> lock(pollMu_);
  while (!finished_) {
    for (const auto& w : pending_) {
      if (!w->completed()) return false;
    }
    try {
      // Every sub-Work has completed: waiting returns at once, rethrowing a failure.
      for (const auto& w : pending_) w->wait(std::chrono::duration<double>(0));
    } catch (...) {
      finished_ = true;
      finish(std::current_exception());
      break;
    }
    pending_.clear();
    if (next_ == phases_.size()) {
      finished_ = true;
      finish();
      break;
    }
    start();
  }
  return true;
}

void PhasedWork::abandon() {
  std::vector<std::shared_ptr<Work>> pending;
  {
    std::lock_guard<std::mutex> lock(pollMu_);
    if (finished_) return;
    finished_ = true;
    pending.swap(pending_);
  }
  for (const auto& w : pending) w->abandon();
  finishAbandoned();
}

bool PhasedWork::idle(std::chrono::microseconds most) {
  std::shared_ptr<Work> first;
  {
    std::lock_guard<std::mutex> lock(pollMu_);
    for (const auto& w : pending_) {
      if (w->completed()) continue;
      first = w;
      break;
    }
  }
  if (!first) return false;
  if (first->polled()) return first->idle(most);
  first->sleepUntilDone(most);
  return true;
}

std::string PhasedWork::missing() const {
  std::lock_guard<std::mutex> lock(pollMu_);
  for (const auto& w : pending_) {
    if (!w->completed()) return "step " + std::to_string(next_) + " waits for " + w->what();
  }
  return {};
}

}  // namespace cdl::comm
