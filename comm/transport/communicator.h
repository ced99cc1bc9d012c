#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/transport/work.h"
#include "kernels/base/bytes.h"

namespace cdl::comm {

// Where the float buffers of allreduce and sendRecv must live for a communicator.
enum class MemoryKind { kHost, kDevice };

// What a communicator's collectives may choose between; every rank of a group must pass the same.
// CollectiveOptions::ringMinFloats: chosen from measurements (Note [Allreduce choice]).
inline constexpr int64_t kMeasuredRingMin = -1;
// What the transports without measurements take for kMeasuredRingMin.
inline constexpr int64_t kDefaultRingMinFloats = int64_t{1} << 18;

struct CollectiveOptions {
  // Allreduces of at least this many floats over three ranks or more run as a ring over the
  // point-to-point seam (Note [Ring allreduce]) on the host transports; smaller ones use the
  // transport's own allreduce. Tests set it to reach the ring with small buffers.
  // kMeasuredRingMin: the MPI transport measures both (Note [Allreduce choice]); the in-process
  // one takes kDefaultRingMinFloats.
  int64_t ringMinFloats = kMeasuredRingMin;
};

// A group of ranks that exchange data. Every rank must issue the same collectives in the same
// order (from one thread per rank, as the Reducer does, not in the order gradients happen to be
// ready); each call returns at once with a Work, and the buffers it names must stay alive and
// untouched until that Work's wait() returns. Errors — a mismatched collective, a peer that never
// arrives — surface from wait() as cdl::Error.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The memory allreduce and sendRecv take; a buffer of the other kind is an error at the call
  // where the transport can tell (NCCL checks every pointer).
  virtual MemoryKind memory() const = 0;

  // Sums data[0..n) over all ranks, in place; every rank ends with the same bits.
  virtual std::shared_ptr<Work> allreduce(float* data, int64_t n) = 0;

  // Gathers every rank's `send` bytes (sizes may differ) on every rank: *recv becomes the
  // concatenation in rank order and (*sizes)[r] the byte count rank r sent.
  virtual std::shared_ptr<Work> allgatherv(const Bytes& send, Bytes* recv,
                                           std::vector<size_t>* sizes) = 0;

  // send[r] (size() entries) goes to rank r; (*recv)[r] becomes what rank r sent here.
  virtual std::shared_ptr<Work> alltoallv(const std::vector<Bytes>& send,
                                          std::vector<Bytes>* recv) = 0;

  // Makes *data on every rank a copy of root's *data (its size too).
  virtual std::shared_ptr<Work> broadcast(Bytes* data, int root) = 0;

  virtual std::shared_ptr<Work> barrier() = 0;

  // The point-to-point seam that collective algorithms (comm/transport/ring_allreduce.h) are
  // built on: sends send[0..sendBytes) to rank `to` and receives exactly recvBytes from rank
  // `from` into recv, both at once (one step of a ring; `to` or `from` may be this rank's own).
  // Not a collective: only `to` and `from` take part, each with its matching sendRecv. Messages
  // between two ranks with the same tag arrive in the order they were sent; tags keep the steps
  // of algorithms in flight together apart. A size that differs from the sender's is an error.
  virtual std::shared_ptr<Work> sendRecv(const void* send, size_t sendBytes, int to, void* recv,
                                         size_t recvBytes, int from, uint64_t tag) = 0;

  // How the fp32 allreduce picks its algorithm by size, for the log (e.g. the measured crossover
  // of Note [Allreduce choice]); empty when there is nothing to say.
  virtual std::string allreduceChoice() const { return {}; }
};

// N in-process ranks as threads, for tests: each rank's communicator is used from its own thread.
// Data really moves between the ranks' buffers and is reduced in rank order (or by the ring for
// large allreduces, as on MPI). A rank that issues a different collective than its peers at the
// same position makes all of them fail with an error naming both calls; one that never arrives
// makes the others' wait() time out naming it.
std::vector<std::shared_ptr<Communicator>> makeLocalGroup(int size,
                                                          const CollectiveOptions& options = {});

}  // namespace cdl::comm
