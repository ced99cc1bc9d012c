#include "comm/transport/tcp/tcp_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "kernels/base/error.h"

namespace cdl::comm {

std::string errnoText() { return std::strerror(errno); }

std::string addressText(uint32_t address, int port) {
  char text[INET_ADDRSTRLEN] = "?";
  in_addr a{};
  a.s_addr = address;
  ::inet_ntop(AF_INET, &a, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(port);
}

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
  if (outer.size() > kMaxEndpointAddresses) outer.resize(kMaxEndpointAddresses);
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

int startConnect(uint32_t address, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  const int flags = ::fcntl(fd, F_GETFL, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = address;
  if (flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 &&
      (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0 ||
       errno == EINPROGRESS)) {
    return fd;
  }
  ::close(fd);
  return -1;
}

int connectBefore(uint32_t address, int port, Clock::time_point deadline) {
  const int fd = startConnect(address, port);
  if (fd < 0) return -1;
  pollfd pfd{fd, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof(err);
  if (::poll(&pfd, 1, msLeft(deadline)) > 0 &&
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
    return fd;
  }
  ::close(fd);
  return -1;
}

int listenAnywhere(int rank, int* port, const std::string& who) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  CDL_CHECK(listener >= 0, who, ": socket: ", errnoText());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(sa);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::listen(listener, 64) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    const std::string why = errnoText();
    ::close(listener);
    CDL_THROW(who, ": rank ", rank, " cannot listen: ", why);
  }
  *port = ntohs(sa.sin_port);
  setNonBlocking(listener, who);
  return listener;
}

uint64_t randomNonce() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
         static_cast<uint64_t>(Clock::now().time_since_epoch().count());
}

Endpoint localEndpoint(int port, const std::string& who) {
  Endpoint e{};
  const std::vector<uint32_t> addresses = localAddresses(who);
  std::copy(addresses.begin(), addresses.end(), e.addresses);
  e.count = static_cast<int32_t>(addresses.size());
  e.port = port;
  return e;
}

}  // namespace cdl::comm
