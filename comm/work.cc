#include "comm/work.h"


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
  // Polling operations are driven from here with a short back-off; the others are woken by
  // finish() through the condition variable.
  auto slice = std::chrono::microseconds(20);
  while (true) {
    if (poll()) break;
    std::unique_lock<std::mutex> lock(mu_);
    if (done_) break;
    const auto now = Clock::now();
    if (!forever && now >= deadline) {
      lock.unlock();
      const std::string who = missing();
      CDL_THROW(what_, " did not complete within ", timeout.count(), " s",
                who.empty() ? std::string() : " (" + who + ")",
                "; a rank may have failed or skipped it (CDL_COMM_TIMEOUT sets the limit)");
    }
    auto until = now + slice;
    if (!forever && until > deadline) until = deadline;
    cv_.wait_until(lock, until, [this] { return done_; });
    if (slice < std::chrono::milliseconds(5)) slice *= 2;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
}

}  // namespace cdl::comm
