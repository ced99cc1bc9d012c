// The TCP ring links of Note [TCP ring links].
#include "comm/transport/tcp/tcp_links.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include "comm/transport/tcp/tcp_socket.h"
#include "kernels/base/clock.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

constexpr int kStallMs = 30000;   // a set-up that makes no progress this long fails
constexpr int kAttemptMs = 3000;  // one connection attempt (connect, hello, answer)

struct Hello {
  uint64_t nonce;
  int32_t from, to;
};

// The rank's side of a hello from `from` to `to` (see the Note).
bool helloMatches(const Hello& h, uint64_t nonce, int from, int to) {
  return h.nonce == nonce && h.from == from && h.to == to;
}

// Accepts on `listener` until a connection from rank `prev` says hello (answered), or throws.
int acceptPrevious(int listener, uint64_t nonce, int rank, int prev, const std::string& who) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kStallMs);
  while (true) {
    pollfd pfd{listener, POLLIN, 0};
    const int left = msLeft(deadline);
    CDL_CHECK(left > 0 && ::poll(&pfd, 1, left) > 0, who, ": rank ", rank,
              " got no connection from rank ", prev, " within ", kStallMs / 1000, " s");
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    setNonBlocking(fd, who);
    const Clock::time_point attempt = Clock::now() + std::chrono::milliseconds(kAttemptMs);
    Hello h{};
    if (transferBefore(fd, reinterpret_cast<char*>(&h), sizeof(h), false, attempt) &&
        helloMatches(h, nonce, prev, rank)) {
      Hello answer{nonce, rank, prev};
      if (transferBefore(fd, reinterpret_cast<char*>(&answer), sizeof(answer), true, attempt)) {
        return fd;
      }
    }
    ::close(fd);  // not our peer (or it gave up): keep listening
  }
}

// Connects to rank `next` at one of its addresses whose answer to the hello is right, or throws.
int connectNext(const Endpoint& peer, uint64_t nonce, int rank, int next, const std::string& who) {
  std::string tried;
  for (int i = 0; i < peer.count; ++i) {
    const std::string where = addressText(peer.addresses[i], peer.port);
    tried += (tried.empty() ? "" : ", ") + where;
    const Clock::time_point attempt = Clock::now() + std::chrono::milliseconds(kAttemptMs);
    const int fd = connectBefore(peer.addresses[i], peer.port, attempt);
    if (fd < 0) continue;
    Hello hello{nonce, rank, next}, answer{};
    const bool ok =
        transferBefore(fd, reinterpret_cast<char*>(&hello), sizeof(hello), true, attempt) &&
        transferBefore(fd, reinterpret_cast<char*>(&answer), sizeof(answer), false, attempt) &&
        helloMatches(answer, nonce, next, rank);
    if (ok) return fd;
    ::close(fd);
  }
  CDL_THROW(who, ": rank ", rank, " cannot reach rank ", next, " at any of its addresses (", tried,
            ")");
}

}  // namespace

TcpRingLinks connectTcpRing(MPI_Comm comm, const std::string& who) {
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  CDL_CHECK(size >= 2, who, ": needs at least 2 ranks");
  // A rank that cannot listen still takes part in the exchange of addresses, with none, so that
  // every rank fails alike instead of waiting for it.
  Endpoint mine{};
  int listener = -1;
  std::string unable;
  try {
    int port = 0;
    listener = listenAnywhere(rank, &port, who);
    mine = localEndpoint(port, who);
  } catch (const Error& e) {
    unable = errorBody(e.what());
  }
  std::vector<Endpoint> all(static_cast<size_t>(size));
  uint64_t nonce = 0;
  if (rank == 0) nonce = randomNonce();
  const bool exchanged = MPI_Allgather(&mine, sizeof(Endpoint), MPI_BYTE, all.data(),
                                       sizeof(Endpoint), MPI_BYTE, comm) == MPI_SUCCESS &&
                         MPI_Bcast(&nonce, 1, MPI_UINT64_T, 0, comm) == MPI_SUCCESS;
  if (unable.empty() && !exchanged) {
    unable = who + ": rank " + std::to_string(rank) + " could not exchange addresses over MPI";
  }
  for (int r = 0; r < size && unable.empty(); ++r) {
    if (all[static_cast<size_t>(r)].count == 0) {
      unable = who + ": rank " + std::to_string(r) + " could not listen for connections";
    }
  }
  if (!unable.empty()) {
    if (listener >= 0) ::close(listener);
    CDL_THROW(unable);
  }

  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  TcpRingLinks links;
  std::exception_ptr acceptError;
  std::thread acceptor([&] {
    try {
      links.fromPrev = acceptPrevious(listener, nonce, rank, prev, who);
    } catch (...) {
      acceptError = std::current_exception();
    }
  });
  std::exception_ptr connectError;
  try {
    links.toNext = connectNext(all[static_cast<size_t>(next)], nonce, rank, next, who);
  } catch (...) {
    connectError = std::current_exception();
  }
  acceptor.join();
  ::close(listener);
  if (connectError || acceptError) {
    closeTcpRing(links);
    std::rethrow_exception(connectError ? connectError : acceptError);
  }
  for (int fd : {links.toNext, links.fromPrev}) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return links;
}

void closeTcpRing(TcpRingLinks& links) {
  if (links.toNext >= 0) ::close(links.toNext);
  if (links.fromPrev >= 0) ::close(links.fromPrev);
  links = TcpRingLinks{};
}

}  // namespace cdl::comm
