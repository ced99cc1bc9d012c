#pragma once

// Thread-rank harness: every rank of an in-process group (comm::makeLocalGroup) runs as a
// std::thread, with its rank set for error messages, and the first failure is rethrown on the
// test's thread once all ranks have ended. Each rank has its own error slot, so no rank's failure
// is lost to another's.
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "comm/transport/communicator.h"
#include "kernels/base/error.h"

namespace cdl::test {

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

// Runs fn(rank, communicator) on `size` thread-ranks of one in-process group.
inline void spawn(int size, const std::function<void(int, std::shared_ptr<comm::Communicator>)>& fn,
                  const comm::CollectiveOptions& options = {}) {
  auto group = comm::makeLocalGroup(size, options);
  onThreadRanks(size, [&](int r) { fn(r, group[static_cast<size_t>(r)]); });
}

// The same with the communicator by reference, for tests that do not keep it.
inline void spawnRanks(int size, const std::function<void(int, comm::Communicator&)>& fn,
                       const comm::CollectiveOptions& options = {}) {
  spawn(
      size, [&](int r, std::shared_ptr<comm::Communicator> c) { fn(r, *c); }, options);
}

}  // namespace cdl::test
