#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/work.h"

namespace cdl::comm {

using Bytes = std::vector<uint8_t>;

// A group of ranks that exchange data. Every rank must issue the same collectives in the same
// order (Note [Collective order] in DESIGN §3); each call returns at once with a Work, and the
// buffers it names must stay alive and untouched until that Work's wait() returns. Errors — a
// mismatched collective, a peer that never arrives — surface from wait() as cdl::Error.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

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
};

// N in-process ranks as threads, for tests: each rank's communicator is used from its own thread.
// Data really moves between the ranks' buffers and is reduced in rank order. A rank that issues a
// different collective than its peers at the same position makes all of them fail with an error
// naming both calls; one that never arrives makes the others' wait() time out naming it.
std::vector<std::shared_ptr<Communicator>> makeLocalGroup(int size);

}  // namespace cdl::comm
