// The raw TCP ring of Note [Raw TCP ring].
#include "bench/tcp_ring.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <thread>

#include "kernels/base/clock.h"
#include "kernels/base/error.h"

namespace cdl::bench {
namespace {

constexpr int kMaxAddresses = 8;
constexpr int kStallMs = 30000;   // a set-up or a step that makes no progress this long fails
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
std::vector<uint32_t> localAddresses() {
  ifaddrs* list = nullptr;
  CDL_CHECK(::getifaddrs(&list) == 0, "raw TCP ring: getifaddrs: ", errnoText());
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

void setNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  CDL_CHECK(flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0,
            "raw TCP ring: fcntl: ", errnoText());
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
    const ssize_t k = out ? ::send(fd, p + done, n - done, MSG_NOSIGNAL)
                          : ::recv(fd, p + done, n - done, 0);
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
int acceptPrevious(int listener, uint64_t nonce, int rank, int prev) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kStallMs);
  while (true) {
    pollfd pfd{listener, POLLIN, 0};
    const int left = msLeft(deadline);
    CDL_CHECK(left > 0 && ::poll(&pfd, 1, left) > 0, "raw TCP ring: rank ", rank,
              " got no connection from rank ", prev, " within ", kStallMs / 1000, " s");
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    setNonBlocking(fd);
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
int connectNext(const Endpoint& peer, uint64_t nonce, int rank, int next) {
  std::string tried;
  for (int i = 0; i < peer.count; ++i) {
    const std::string where = addressText(peer.addresses[i], peer.port);
    tried += (tried.empty() ? "" : ", ") + where;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CDL_CHECK(fd >= 0, "raw TCP ring: socket: ", errnoText());
    setNonBlocking(fd);
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
    ok = ok &&
         transferBefore(fd, reinterpret_cast<char*>(&hello), sizeof(hello), true, attempt) &&
         transferBefore(fd, reinterpret_cast<char*>(&answer), sizeof(answer), false, attempt) &&
         helloMatches(answer, nonce, next, rank);
    if (ok) return fd;
    ::close(fd);
  }
  CDL_THROW("raw TCP ring: rank ", rank, " cannot reach rank ", next, " at any of its addresses (",
            tried, ")");
}

}  // namespace

TcpRing::TcpRing() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  CDL_CHECK(size_ >= 2, "raw TCP ring: needs at least 2 ranks");
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  CDL_CHECK(listener >= 0, "raw TCP ring: socket: ", errnoText());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(sa);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::listen(listener, 16) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    const std::string why = errnoText();
    ::close(listener);
    CDL_THROW("raw TCP ring: rank ", rank_, " cannot listen: ", why);
  }
  setNonBlocking(listener);

  Endpoint mine{};
  const std::vector<uint32_t> addresses = localAddresses();
  std::copy(addresses.begin(), addresses.end(), mine.addresses);
  mine.count = static_cast<int32_t>(addresses.size());
  mine.port = ntohs(sa.sin_port);
  std::vector<Endpoint> all(static_cast<size_t>(size_));
  MPI_Allgather(&mine, sizeof(Endpoint), MPI_BYTE, all.data(), sizeof(Endpoint), MPI_BYTE,
                MPI_COMM_WORLD);
  uint64_t nonce = 0;
  if (rank_ == 0) {
    std::random_device rd;
    nonce = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
            static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  MPI_Bcast(&nonce, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);

  const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
  std::exception_ptr acceptError;
  std::thread acceptor([&] {
    try {
      fromPrev_ = acceptPrevious(listener, nonce, rank_, prev);
    } catch (...) {
      acceptError = std::current_exception();
    }
  });
  std::exception_ptr connectError;
  try {
    toNext_ = connectNext(all[static_cast<size_t>(next)], nonce, rank_, next);
  } catch (...) {
    connectError = std::current_exception();
  }
  acceptor.join();
  ::close(listener);
  if (connectError || acceptError) {
    if (toNext_ >= 0) ::close(toNext_);
    if (fromPrev_ >= 0) ::close(fromPrev_);
    std::rethrow_exception(connectError ? connectError : acceptError);
  }
  for (int fd : {toNext_, fromPrev_}) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TcpRing::~TcpRing() {
  if (toNext_ >= 0) ::close(toNext_);
  if (fromPrev_ >= 0) ::close(fromPrev_);
}

void TcpRing::run(int64_t bytes) {
  const size_t chunk = static_cast<size_t>((bytes + size_ - 1) / size_);
  out_.resize(chunk);
  in_.resize(chunk);
  const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
  for (int step = 0; step < 2 * (size_ - 1); ++step) {
    size_t sent = 0, got = 0;
    while (sent < chunk || got < chunk) {
      pollfd fds[2] = {{toNext_, static_cast<short>(sent < chunk ? POLLOUT : 0), 0},
                       {fromPrev_, static_cast<short>(got < chunk ? POLLIN : 0), 0}};
      const int ready = ::poll(fds, 2, kStallMs);
      CDL_CHECK(ready != 0, "raw TCP ring: rank ", rank_, " stalled for ", kStallMs / 1000,
                " s in step ", step, " (sent ", sent, " of ", chunk, " bytes to rank ", next,
                ", got ", got, " from rank ", prev, ")");
      if (ready < 0) {
        CDL_CHECK(errno == EINTR, "raw TCP ring: poll: ", errnoText());
        continue;
      }
      if (sent < chunk && fds[0].revents != 0) {
        const ssize_t k = ::send(toNext_, out_.data() + sent, chunk - sent, MSG_NOSIGNAL);
        if (k > 0) {
          sent += static_cast<size_t>(k);
        } else {
          CDL_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR, "raw TCP ring: rank ",
                    rank_, " cannot send to rank ", next, ": ", errnoText());
        }
      }
      if (got < chunk && fds[1].revents != 0) {
        const ssize_t k = ::recv(fromPrev_, in_.data() + got, chunk - got, 0);
        CDL_CHECK(k != 0, "raw TCP ring: rank ", prev, " closed its connection to rank ", rank_);
        if (k > 0) {
          got += static_cast<size_t>(k);
        } else {
          CDL_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR, "raw TCP ring: rank ",
                    rank_, " cannot receive from rank ", prev, ": ", errnoText());
        }
      }
    }
  }
}

}  // namespace cdl::bench
