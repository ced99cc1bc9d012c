#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "kernels/error.h"

namespace cdl::core {

// Runs fn(rank, communicator) on `size` in-process ranks, each on its own thread naming its rank
// in errors; rethrows the lowest rank's error once all have finished.
inline void runOnRanks(int size,
                       const std::function<void(int, std::shared_ptr<comm::Communicator>)>& fn) {
  auto group = comm::makeLocalGroup(size);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(size);
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      setThreadRank(r);
      try {
        fn(r, group[r]);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace cdl::core
