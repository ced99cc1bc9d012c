#pragma once

// Ranks of an in-process group (comm::makeLocalGroup) as threads: every rank runs on a
// std::thread with its rank set for error messages, and the first failure is rethrown on the
// caller's thread once all ranks have ended. Each rank has its own error slot, so no rank's
// failure is lost to another's.
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::comm {

// Runs fn(rank) on `size` threads, each with its rank set; rethrows the first rank's failure
// once every rank has ended.
inline void onThreadRanks(int size, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      setThreadRank(r);
      try {
        fn(r);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
      setThreadRank(-1);
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace cdl::comm
