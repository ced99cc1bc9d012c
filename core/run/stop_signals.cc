#include "core/run/stop_signals.h"

#include <signal.h>

#include <atomic>
#include <cstdio>

#include "kernels/base/error.h"

namespace cdl::core {
namespace {

std::atomic<int> requested{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler needs a lock-free flag");

void onSignal(int signal) { requestStop(signal); }

}  // namespace

void installStopSignals() {
  struct sigaction sa = {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  // One-shot: the second delivery takes the default action (the process ends).
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  for (int s : {SIGTERM, SIGINT, SIGUSR1}) {
    CDL_CHECK(::sigaction(s, &sa, nullptr) == 0, "cannot install the handler of ",
              stopSignalName(s));
  }
}

int stopRequested() { return requested.load(std::memory_order_relaxed); }

void requestStop(int signal) {
  int none = 0;
  requested.compare_exchange_strong(none, signal, std::memory_order_relaxed);
}

void clearStopRequest() { requested.store(0, std::memory_order_relaxed); }

const char* stopSignalName(int signal) {
  switch (signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGUSR1:
      return "SIGUSR1";
    default: {
      thread_local char text[32];
      std::snprintf(text, sizeof(text), "signal %d", signal);
      return text;
    }
  }
}

}  // namespace cdl::core
