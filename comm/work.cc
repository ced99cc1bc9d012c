#include "comm/work.h"

#include <thread>

#include "comm/env.h"
#include "kernels/error.h"

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

void Work::wait() { wait(std::chrono::duration<double>(envSeconds(kEnvCommTimeout))); }

void Work::wait(std::chrono::duration<double> timeout) {
  using Clock = std::chrono::steady_clock;
  const bool forever = timeout.count() <= 0.0;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
  auto timedOut = [&] {
    const std::string who = missing();
    CDL_THROW(what_, " did not complete within ", timeout.count(), " s",
              who.empty() ? std::string() : " (" + who + ")",
              "; a rank may have failed or skipped it (CDL_COMM_TIMEOUT sets the limit)");
  };
  if (polled()) {
    // Drive progress ourselves; yield so that oversubscribed ranks still get the core.
    for (uint64_t spins = 0; !poll(); ++spins) {
      if ((spins & 255) == 0 && !forever && Clock::now() >= deadline) timedOut();
      std::this_thread::yield();
    }
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    if (forever) {
      cv_.wait(lock, [this] { return done_; });
    } else if (!cv_.wait_until(lock, deadline, [this] { return done_; })) {
      lock.unlock();
      timedOut();
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
}

}  // namespace cdl::comm
