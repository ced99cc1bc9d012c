#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/clock.h"

namespace cdl::comm {

// The socket plumbing that cdl's own TCP connections share (Note [TCP ring links], Note [Peer
// status]): IPv4 only, non-blocking sockets, every wait bounded by a deadline.

inline constexpr int kMaxEndpointAddresses = 8;

// Where a rank listens: its host's IPv4 addresses (non-loopback first) and a port. Plain data,
// exchanged between ranks as bytes.
struct Endpoint {
  uint32_t addresses[kMaxEndpointAddresses];  // IPv4, network byte order
  int32_t count;                              // 0: the rank could not listen
  int32_t port;                               // host byte order
};

// strerror(errno).
std::string errnoText();
// "10.0.0.1:4242".
std::string addressText(uint32_t address, int port);
// This host's IPv4 addresses that are up: the others first, loopback last (at most
// kMaxEndpointAddresses). `who` starts the error.
std::vector<uint32_t> localAddresses(const std::string& who);
void setNonBlocking(int fd, const std::string& who);
// Milliseconds from now to the deadline, at least 0.
int msLeft(Clock::time_point deadline);
// Moves n bytes through a non-blocking socket (sends when `out`, else receives) before the
// deadline; false when the peer closed, failed or was too slow.
bool transferBefore(int fd, char* p, size_t n, bool out, Clock::time_point deadline);
// A non-blocking socket whose connection to address:port has started (poll it for POLLOUT and
// read SO_ERROR), or -1 where it failed at once.
int startConnect(uint32_t address, int port);
// A non-blocking socket connected to address:port before the deadline, or -1.
int connectBefore(uint32_t address, int port, Clock::time_point deadline);
// A non-blocking socket listening on an ephemeral port of every address; its port in *port.
// Throws cdl::Error starting with `who` and naming `rank`.
int listenAnywhere(int rank, int* port, const std::string& who);
// A random 64-bit number (a set-up's nonce, a communicator's id).
uint64_t randomNonce();
// This process's endpoint for a listener on `port`: its addresses and the port.
Endpoint localEndpoint(int port, const std::string& who);

}  // namespace cdl::comm
