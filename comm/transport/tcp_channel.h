#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "comm/transport/tcp_links.h"
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
// One thread per channel moves the bytes, sleeping in poll() until a socket is ready: nothing
// spins on a shared core, and the kernel keeps the link busy while the ranks compute. A send is
// first tried at once from the caller's thread, so a ring step costs no thread switch while the
// socket's buffer has room.
// Failures are final for the channel: a peer that closes its link or resets it, a bad header, and
// an operation abandoned in flight (a timeout: its buffers may go) fail every operation in flight
// and every later one with an error naming the ranks and the cause.
class TcpChannel {
 public:
  // Takes the links of rank `rank` (whose next rank is `next` and previous one `prev`) and starts
  // the thread.
  TcpChannel(TcpRingLinks links, int rank, int next, int prev);
  // Fails the operations in flight, stops the thread and closes the links.
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

}  // namespace cdl::comm
