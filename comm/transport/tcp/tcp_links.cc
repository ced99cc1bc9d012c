// The TCP ring links of Note [TCP ring links].
#include "comm/transport/tcp/tcp_links.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <random>
#include <thread>
#include <vector>

#include "kernels/base/clock.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

constexpr int kMaxAddresses = 8;
constexpr int kStallMs = 30000;   // a set-up that makes no progress this long fails
constexpr int kAttemptMs = 3000;  // one connection attempt (connect, hello, answer)

struct Endpoint {
  uint32_t addresses[kMaxAddresses];  // IPv4, network byte order
  int32_t count;
  int32_t port;  // host byte order
};

struct Hello {
  uint64_t nonce;
  int32_t from, to;
};

std::string errnoText() { return std::strerror(errno); }

std::string addressText(uint32_t address, int port) {
  char text[INET_ADDRSTRLEN] = "?";
  in_addr a{};
  a.s_addr = address;
  ::inet_ntop(AF_INET, &a, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(port);
}

// This host's IPv4 addresses that are up: the others first, loopback last.
std::vector<uint32_t> localAddresses(const std::string& who) {
  ifaddrs* list = nullptr;
  CDL_CHECK(::getifaddrs(&list) == 0, who, ": getifaddrs: ", errnoText());
  std::vector<uint32_t> outer, loopback;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    if ((a->ifa_flags & IFF_UP) == 0) continue;
    const uint32_t ip = reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr;
    ((a->ifa_flags & IFF_LOOPBACK) != 0 ? loopback : outer).push_back(ip);
  }
  ::freeifaddrs(list);
  outer.insert(outer.end(), loopback.begin(), loopback.end());
  if (outer.empty()) outer.push_back(htonl(INADDR_LOOPBACK));
  if (outer.size() > kMaxAddresses) outer.resize(kMaxAddresses);
  return outer;
}

void setNonBlocking(int fd, const std::string& who) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  CDL_CHECK(flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0, who,
            ": fcntl: ", errnoText());
}

int msLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<int64_t>(0, left));
}

// Moves n bytes through a non-blocking socket (send when out, else receive) before the deadline.
bool transferBefore(int fd, char* p, size_t n, bool out, Clock::time_point deadline) {
  size_t done = 0;
  while (done < n) {
    const ssize_t k =
        out ? ::send(fd, p + done, n - done, MSG_NOSIGNAL) : ::recv(fd, p + done, n - done, 0);
    if (k > 0) {
      done += static_cast<size_t>(k);
      continue;
    }
    if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return false;
    pollfd pfd{fd, static_cast<short>(out ? POLLOUT : POLLIN), 0};
    const int left = msLeft(deadline);
    if (left == 0 || ::poll(&pfd, 1, left) == 0) return false;
  }
  return true;
}

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
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CDL_CHECK(fd >= 0, who, ": socket: ", errnoText());
    setNonBlocking(fd, who);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(peer.port));
    sa.sin_addr.s_addr = peer.addresses[i];
    const Clock::time_point attempt = Clock::now() + std::chrono::milliseconds(kAttemptMs);
    bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0;
    if (!ok && errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof(err);
      ok = ::poll(&pfd, 1, msLeft(attempt)) > 0 &&
           ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    Hello hello{nonce, rank, next}, answer{};
    ok = ok && transferBefore(fd, reinterpret_cast<char*>(&hello), sizeof(hello), true, attempt) &&
         transferBefore(fd, reinterpret_cast<char*>(&answer), sizeof(answer), false, attempt) &&
         helloMatches(answer, nonce, next, rank);
    if (ok) return fd;
    ::close(fd);
  }
  CDL_THROW(who, ": rank ", rank, " cannot reach rank ", next, " at any of its addresses (", tried,
            ")");
}

// A listening socket on an ephemeral port of every address; its port in *port.
int listenAnywhere(int rank, int* port, const std::string& who) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  CDL_CHECK(listener >= 0, who, ": socket: ", errnoText());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(sa);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::listen(listener, 16) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    const std::string why = errnoText();
    ::close(listener);
    CDL_THROW(who, ": rank ", rank, " cannot listen: ", why);
  }
  *port = ntohs(sa.sin_port);
  setNonBlocking(listener, who);
  return listener;
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
    listener = listenAnywhere(rank, &mine.port, who);
    const std::vector<uint32_t> addresses = localAddresses(who);
    std::copy(addresses.begin(), addresses.end(), mine.addresses);
    mine.count = static_cast<int32_t>(addresses.size());
  } catch (const Error& e) {
    unable = errorBody(e.what());
  }
  std::vector<Endpoint> all(static_cast<size_t>(size));
  uint64_t nonce = 0;
  if (rank == 0) {
    std::random_device rd;
    nonce = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
            static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
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
