#pragma once

#include <cstdint>
#include <vector>

namespace cdl::bench {

// Note [Raw TCP ring]
// ~~~~~~~~~~~~~~~~~~~
// The physical limit of an fp32 ring allreduce on the links the ranks really use, measured in
// the same run as the collectives it bounds: plain TCP sockets from each rank to the next, with
// the ring's traffic and nothing else. A ring allreduce of S bytes on W ranks is 2(W-1) steps in
// each of which every rank sends S/W bytes to the next rank while it receives S/W from the
// previous one; run(S) does exactly that with no arithmetic, no copies, no protocol and no
// progress engine, so busbw of run(S) is what the links deliver to one full-duplex TCP stream
// per rank. An allreduce (MPI's, cdl's, gloo's) at x% of its rate moves bytes at x% of what the
// network allows.
//
// The ring runs over MPI_COMM_WORLD's TCP ring links (Note [TCP ring links]); a step that stalls
// for 30 s is an error naming the rank and its peer.

// The name of its rows in cdl-bench allreduce's records.
inline constexpr char kTcpRingRow[] = "tcp_ring_raw";

class TcpRing {
 public:
  // Collective over MPI_COMM_WORLD (MPI initialized; at least 2 ranks).
  TcpRing();
  ~TcpRing();
  TcpRing(const TcpRing&) = delete;
  TcpRing& operator=(const TcpRing&) = delete;

  // The ring allreduce's traffic for `bytes` (see the Note). Collective.
  void run(int64_t bytes);

 private:
  int rank_ = 0, size_ = 0;
  int toNext_ = -1;    // connected to rank + 1 (Note [TCP ring links])
  int fromPrev_ = -1;  // accepted from rank - 1
  std::vector<char> out_, in_;
};

}  // namespace cdl::bench
