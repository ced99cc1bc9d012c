#pragma once

// Thread-rank harness for the tests: comm::onThreadRanks (comm/transport/thread_ranks.h), and
// groups of in-process communicators run on it.
#include <functional>
#include <memory>

#include "comm/transport/communicator.h"
#include "comm/transport/thread_ranks.h"

namespace cdl::test {

using comm::onThreadRanks;

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
