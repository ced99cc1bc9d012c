// The raw TCP ring of Note [Raw TCP ring].
#include "bench/tcp_ring.h"

#include <mpi.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "comm/transport/tcp/tcp_links.h"
#include "kernels/base/error.h"

namespace cdl::bench {
namespace {

constexpr int kStallMs = 30000;  // a step that makes no progress this long fails

std::string errnoText() { return std::strerror(errno); }

}  // namespace

TcpRing::TcpRing() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  CDL_CHECK(size_ >= 2, "raw TCP ring: needs at least 2 ranks");
  const comm::TcpRingLinks links = comm::connectTcpRing(MPI_COMM_WORLD, "raw TCP ring");
  toNext_ = links.toNext;
  fromPrev_ = links.fromPrev;
  MPI_Barrier(MPI_COMM_WORLD);
}

TcpRing::~TcpRing() {
  comm::TcpRingLinks links{toNext_, fromPrev_};
  comm::closeTcpRing(links);
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
          CDL_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR,
                    "raw TCP ring: rank ", rank_, " cannot send to rank ", next, ": ", errnoText());
        }
      }
      if (got < chunk && fds[1].revents != 0) {
        const ssize_t k = ::recv(fromPrev_, in_.data() + got, chunk - got, 0);
        CDL_CHECK(k != 0, "raw TCP ring: rank ", prev, " closed its connection to rank ", rank_);
        if (k > 0) {
          got += static_cast<size_t>(k);
        } else {
          CDL_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR,
                    "raw TCP ring: rank ", rank_, " cannot receive from rank ", prev, ": ",
                    errnoText());
        }
      }
    }
  }
}

}  // namespace cdl::bench
