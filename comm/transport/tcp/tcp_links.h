#pragma once

#include <mpi.h>

#include <string>

namespace cdl::comm {

// Note [TCP ring links]
// ~~~~~~~~~~~~~~~~~~~~~
// Plain TCP connections from each rank of an MPI communicator to the next one in rank order (and
// so from the previous one), set up over MPI: every rank listens on an ephemeral port of every
// address, allgathers its IPv4 addresses (non-loopback first) and port, and connects to the next
// rank's addresses in order while a thread accepts the previous rank. A connection counts only
// after a hello carrying the set-up's nonce (broadcast from rank 0) and the two ranks is answered
// in kind, so an address that reaches some other host or process (a docker bridge present on
// every node, say) is skipped. A set-up that stalls for 30 s is an error naming the rank and its
// peer. The raw TCP ring of cdl-bench (Note [Raw TCP ring]) and the MPI communicator's ring
// messages (Note [TCP ring messages]) run over these links.
struct TcpRingLinks {
  int toNext = -1;    // connected to rank + 1 (blocking mode off, TCP_NODELAY on)
  int fromPrev = -1;  // accepted from rank - 1
};

// Collective over comm (at least 2 ranks). `who` starts every error ("raw TCP ring: rank 2 cannot
// reach rank 3 ..."). Throws cdl::Error; on every rank that returns, both sockets are open.
TcpRingLinks connectTcpRing(MPI_Comm comm, const std::string& who);

// Closes both sockets (those that are open).
void closeTcpRing(TcpRingLinks& links);

}  // namespace cdl::comm
