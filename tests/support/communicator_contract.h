#pragma once

// The contract every Communicator keeps, as one suite that each backend's tests run on their own
// ranks (thread-ranks of the in-process group, MPI processes, NCCL ranks on their GPUs): called by
// every rank of c together, each check asserts what a caller of comm/transport/communicator.h
// relies on, whatever carries it.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "comm/transport/communicator.h"

namespace cdl::test {

inline constexpr std::chrono::seconds kContractWait(60);

// Runs c's allreduce on v in the backend's memory (the host's by default; a device's for NCCL)
// and leaves the sum in v.
using AllreduceOf = std::function<void(comm::Communicator& c, std::vector<float>& v)>;
inline void hostAllreduce(comm::Communicator& c, std::vector<float>& v) {
  c.allreduce(v.data(), static_cast<int64_t>(v.size()))->wait(kContractWait);
}

// Collective: whether every rank of c holds the same `bytes` bytes at data (their xxhash64s).
inline bool sameOnEveryRank(comm::Communicator& c, const void* data, size_t bytes) {
  const uint64_t h = XXH64(data, bytes, 0);
  Bytes mine(reinterpret_cast<const uint8_t*>(&h), reinterpret_cast<const uint8_t*>(&h) + 8);
  Bytes all;
  std::vector<size_t> sizes;
  c.allgatherv(mine, &all, &sizes)->wait(kContractWait);
  for (int r = 1; r < c.size(); ++r) {
    if (!std::equal(all.begin(), all.begin() + 8, all.begin() + 8 * r)) return false;
  }
  return true;
}

// An allreduce of n floats sums them within float rounding, and every rank holds the same bits.
inline void expectAllreduceContract(comm::Communicator& c, int64_t n,
                                    const AllreduceOf& allreduce = hostAllreduce) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[i] = 0.25f * float(c.rank() + 1) + 1e-3f * float(i % 97);
  allreduce(c, x);
  ASSERT_EQ(x.size(), static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double want = 0;
    for (int r = 0; r < c.size(); ++r) want += 0.25 * (r + 1) + 1e-3 * double(i % 97);
    ASSERT_NEAR(x[i], want, 1e-4 * c.size()) << "n=" << n << " i=" << i;
  }
  EXPECT_TRUE(sameOnEveryRank(c, x.data(), x.size() * sizeof(float)))
      << "the ranks hold different bits for n=" << n;
}

// allgatherv, alltoallv and broadcast deliver every rank's bytes, of sizes that differ by rank
// (from m), in rank order; a barrier returns on every rank.
inline void expectExchangeContract(comm::Communicator& c, int64_t m) {
  const int size = c.size(), r = c.rank();
  Bytes mine(static_cast<size_t>(m + r), static_cast<uint8_t>(r));
  Bytes all;
  std::vector<size_t> sizes;
  c.allgatherv(mine, &all, &sizes)->wait(kContractWait);
  ASSERT_EQ(static_cast<int>(sizes.size()), size);
  size_t off = 0;
  for (int s = 0; s < size; ++s) {
    ASSERT_EQ(sizes[s], static_cast<size_t>(m + s));
    for (size_t i = 0; i < sizes[s]; ++i) ASSERT_EQ(all[off + i], s);
    off += sizes[s];
  }
  std::vector<Bytes> send(size), recv;
  for (int to = 0; to < size; ++to)
    send[to].assign(static_cast<size_t>(to + r), uint8_t(10 * r + to));
  c.alltoallv(send, &recv)->wait(kContractWait);
  ASSERT_EQ(static_cast<int>(recv.size()), size);
  for (int from = 0; from < size; ++from) {
    EXPECT_EQ(recv[from], Bytes(static_cast<size_t>(r + from), uint8_t(10 * from + r)));
  }
  Bytes b = r == size - 1 ? Bytes(static_cast<size_t>(m + 3), 5) : Bytes{9};
  c.broadcast(&b, size - 1)->wait(kContractWait);
  EXPECT_EQ(b, Bytes(static_cast<size_t>(m + 3), 5));
  c.barrier()->wait(kContractWait);
}

// The whole contract for the sizes every backend's tests cover.
inline void expectCommunicatorContract(comm::Communicator& c,
                                       const AllreduceOf& allreduce = hostAllreduce) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, (int64_t{1} << 20) + 3}) {
    expectAllreduceContract(c, n, allreduce);
    expectExchangeContract(c, std::min<int64_t>(n, 5000));
  }
}

}  // namespace cdl::test
