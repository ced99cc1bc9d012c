#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/transport/tcp/tcp_socket.h"
#include "kernels/base/clock.h"

namespace cdl::comm {

// Note [Peer status]
// ~~~~~~~~~~~~~~~~~~
// A collective that times out names the ranks it waits for. MPI's nonblocking collectives cannot
// tell (a request is done or it is not), so each process answers status queries on a side
// channel of its own: a thread listens on an ephemeral TCP port of every address (its endpoint is
// allgathered when an MPI communicator is made) and, for each communicator the process is part
// of, answers how many collectives this rank has issued on it, the latest one's description and
// how long ago it was issued. A rank whose wait times out asks every other rank at once, within
// kStatusQuerySeconds, and names
//  - the ranks that did not answer: stopped (SIGSTOP), hung in the kernel, or cut off (their
//    process, host or link is gone);
//  - the ranks that answered but have not issued that collective yet (still computing, or stuck
//    before it: a deadlocked data loader), with their latest collective and its age.
// Ranks that have issued it are waiting too. When every rank has, the transport itself is stuck
// (a link that drops everything while the status queries, on other connections, still pass) and
// the error says so. Queries carry the communicator's id (a random number its rank 0 draws) and
// the rank asked for; anything else gets no answer, so an address that reaches another process
// is never taken for the rank. The thread sleeps in accept() and costs nothing until asked.
inline constexpr double kStatusQuerySeconds = 2.0;

// One communicator's collectives on this rank, as the status queries see them.
class CollectiveLog {
 public:
  // A collective was issued: the count goes up and it becomes the latest.
  void issued(const std::string& what);

  struct Snapshot {
    uint64_t issued = 0;      // collectives issued so far
    std::string latest;       // the latest one's description (empty: none)
    double ageSeconds = 0.0;  // since the latest was issued
  };
  Snapshot snapshot() const;

 private:
  mutable std::mutex mu_;
  uint64_t issued_ = 0;
  std::string latest_;
  Clock::time_point at_;
};

// This process's status endpoint, starting its thread on the first call. Throws cdl::Error where
// the process cannot listen.
Endpoint statusEndpoint();

// Makes rank `rank`'s log of communicator `id` answer status queries while it lives.
std::shared_ptr<CollectiveLog> registerCollectiveLog(uint64_t id, int rank);

// What one peer answered.
struct PeerAnswer {
  bool answered = false;
  CollectiveLog::Snapshot status;
};

// Asks every rank r != self at endpoints[r] for its log of communicator `id`, all at once, for
// at most `budget`. answers[self] is this rank's own (answered, empty).
std::vector<PeerAnswer> askPeers(const std::vector<Endpoint>& endpoints, int self, uint64_t id,
                                 std::chrono::milliseconds budget);

// Who collective number `seq` (0-based, in issue order) waits for, from the answers: "waiting for
// rank 2: it did not answer ...; rank 3: it has not issued it ...", or what it means when every
// rank has issued it.
std::string describeMissing(const std::vector<PeerAnswer>& answers, int self, uint64_t seq,
                            double budgetSeconds);

}  // namespace cdl::comm
