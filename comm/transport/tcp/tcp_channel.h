#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "comm/transport/tcp/tcp_links.h"
#include "comm/transport/work.h"

namespace cdl::comm {

// Note [TCP ring messages]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Tagged messages between ring neighbours over the TCP ring links (Note [TCP ring links]): each
// message is a 24-byte header (magic, tag, length) and its bytes, written straight from the
// sender's buffer. A receive posted before its message arrives is read straight into its buffer;
// a message that arrives first waits in memory until a receive with its tag is posted. Messages
// with one tag are matched in the order they were sent; other tags may come in between, so
// algorithms in flight together (rings of several buckets) stay apart as they would over MPI.
// The channel has no thread of its own: bytes move when one of its Works is polled or waited
// for, as MPI's do. A waiting thread sleeps in ppoll() on the two sockets (a millisecond at a
// time, so that other Works in flight are still polled) and moves the bytes itself as they come,
// so nothing spins on a shared core and no thread switch sits between a ring step's bytes and
// its sum. A send is first tried at once by the caller. (On 4 emulated nodes sharing 2 cores at
// 10 Gbit/s, a thread per channel that moved the bytes and woke the waiters made a 64 MiB ring
// allreduce 1.9x slower than the raw TCP ring; this way it takes 1.3-1.6x the raw ring's time,
// about what the ring over MPI's point-to-point takes there, the rest being the ring's sums. At
// 100 Mbit/s it matches the raw ring from 256 KiB on, where over MPI it reached 86-88%.)
// Failures are final for the channel: a peer that closes its link or resets it, a bad header, and
// an operation abandoned in flight (a timeout: its buffers may go) fail every operation in flight
// and every later one with an error naming the ranks and the cause.
class TcpChannel {
 public:
  // Takes the links of rank `rank` (whose next rank is `next` and previous one `prev`).
  TcpChannel(TcpRingLinks links, int rank, int next, int prev);
  // Fails the operations in flight and closes the links.
  ~TcpChannel();
  TcpChannel(const TcpChannel&) = delete;
  TcpChannel& operator=(const TcpChannel&) = delete;

  // Sends send[0..sendBytes) to the next rank (when `toNext`) and receives exactly recvBytes from
  // the previous one into recv (when `fromPrev`), both as messages with `tag`; the Work completes
  // when both are done (a send once its bytes are with the kernel). A message of another length
  // than recvBytes fails the Work naming both. The buffers must stay alive until then.
  std::shared_ptr<Work> exchange(const void* send, size_t sendBytes, bool toNext, void* recv,
                                 size_t recvBytes, bool fromPrev, uint64_t tag,
                                 const std::string& what);

  struct Core;

 private:
  std::shared_ptr<Core> core_;
};

// Resets both TCP ring links of every channel of this process, as a link that drops would: each
// neighbour gets a TCP reset, and the channels here fail. For the fault tests (reset-POINT, Note
// [Fault points]).
void resetTcpChannels();

}  // namespace cdl::comm
