#include <gtest/gtest.h>
#include <xxhash.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "comm/transport/mpi_communicator.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> c = makeMpiCommunicator();
  return c;
}

constexpr auto kWait = std::chrono::seconds(60);

TEST(MpiCollectives, AllreduceSumsAndEveryRankHoldsTheSameBits) {
  auto c = world();
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, (int64_t{1} << 20) + 3}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[i] = 0.25f * float(c->rank() + 1) + 1e-3f * float(i % 97);
    c->allreduce(x.data(), n)->wait(kWait);
    for (int64_t i = 0; i < n; ++i) {
      double want = 0;
      for (int r = 0; r < c->size(); ++r) want += 0.25 * (r + 1) + 1e-3 * double(i % 97);
      ASSERT_NEAR(x[i], want, 1e-4 * c->size()) << "n=" << n << " i=" << i;
    }
    const uint64_t h = XXH64(x.data(), x.size() * sizeof(float), 0);
    Bytes mine(reinterpret_cast<const uint8_t*>(&h), reinterpret_cast<const uint8_t*>(&h) + 8);
    Bytes all;
    std::vector<size_t> sizes;
    c->allgatherv(mine, &all, &sizes)->wait(kWait);
    for (int r = 1; r < c->size(); ++r) {
      EXPECT_TRUE(std::equal(all.begin(), all.begin() + 8, all.begin() + 8 * r))
          << "rank " << r << " holds different bits for n=" << n;
    }
  }
}

TEST(MpiCollectives, VariableSizeExchangesDeliverEveryRanksBytes) {
  auto c = world();
  const int size = c->size(), r = c->rank();
  Bytes mine(static_cast<size_t>(1000 + r), static_cast<uint8_t>(r));
  Bytes all;
  std::vector<size_t> sizes;
  c->allgatherv(mine, &all, &sizes)->wait(kWait);
  size_t off = 0;
  for (int s = 0; s < size; ++s) {
    ASSERT_EQ(sizes[s], static_cast<size_t>(1000 + s));
    for (size_t i = 0; i < sizes[s]; ++i) ASSERT_EQ(all[off + i], s);
    off += sizes[s];
  }
  std::vector<Bytes> send(size), recv;
  for (int to = 0; to < size; ++to)
    send[to].assign(static_cast<size_t>(to + r), uint8_t(10 * r + to));
  c->alltoallv(send, &recv)->wait(kWait);
  for (int from = 0; from < size; ++from) {
    EXPECT_EQ(recv[from], Bytes(static_cast<size_t>(r + from), uint8_t(10 * from + r)));
  }
  Bytes b = r == size - 1 ? Bytes{7, 8, 9} : Bytes{};
  c->broadcast(&b, size - 1)->wait(kWait);
  EXPECT_EQ(b, (Bytes{7, 8, 9}));
}

TEST(MpiCollectives, ExchangesInFlightTogetherKeepTheirOwnBytesWhateverTheWaitOrder) {
  auto c = world();
  const int size = c->size(), r = c->rank();
  constexpr int kCalls = 4;
  std::vector<std::vector<Bytes>> send(kCalls, std::vector<Bytes>(size));
  // Receive buffers that already hold stale bytes of other sizes, as reused buffers do.
  std::vector<std::vector<Bytes>> recv(kCalls, std::vector<Bytes>(size + 1, Bytes(77, 0xee)));
  std::vector<std::shared_ptr<Work>> works;
  for (int k = 0; k < kCalls; ++k) {
    for (int to = 0; to < size; ++to) {
      send[k][to].assign(static_cast<size_t>(100000 * (k % 2) + 3 * to + r + k),
                         static_cast<uint8_t>(k * 50 + 10 * r + to));
    }
    works.push_back(c->alltoallv(send[k], &recv[k]));
  }
  for (int k = kCalls - 1; k >= 0; --k) works[k]->wait(kWait);
  for (int k = 0; k < kCalls; ++k) {
    ASSERT_EQ(recv[k].size(), static_cast<size_t>(size));
    for (int from = 0; from < size; ++from) {
      EXPECT_EQ(recv[k][from], Bytes(static_cast<size_t>(100000 * (k % 2) + 3 * r + from + k),
                                     static_cast<uint8_t>(k * 50 + 10 * from + r)))
          << "call " << k << " from rank " << from;
    }
  }
}

// Large allreduces take the ring (Note [Ring allreduce]) step by step as their Work is polled:
// several in flight together, mixed with exchanges and waited in any order, keep their own data.
TEST(MpiCollectives, LargeAllreducesInFlightTogetherSumTheirOwnBuffers) {
  auto c = world();
  const int size = c->size(), r = c->rank();
  const std::vector<int64_t> lengths = {int64_t{1} << 18, (int64_t{1} << 18) + 1,
                                        (int64_t{3} << 18) + 7};
  std::vector<std::vector<float>> x;
  std::vector<std::shared_ptr<Work>> works;
  std::vector<Bytes> send(size, Bytes(1000, static_cast<uint8_t>(r))), recv;
  for (size_t k = 0; k < lengths.size(); ++k) {
    x.emplace_back(static_cast<size_t>(lengths[k]));
    for (int64_t i = 0; i < lengths[k]; ++i) x[k][i] = float((i + k + r) % 13);
    works.push_back(c->allreduce(x[k].data(), lengths[k]));
    if (k == 0) works.push_back(c->alltoallv(send, &recv));
  }
  for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait(kWait);
  for (size_t k = 0; k < lengths.size(); ++k) {
    for (int64_t i = 0; i < lengths[k]; ++i) {
      float want = 0;
      for (int q = 0; q < size; ++q) want += float((i + k + q) % 13);
      ASSERT_EQ(x[k][i], want) << "allreduce " << k << " element " << i;
    }
  }
  for (int from = 0; from < size; ++from) {
    EXPECT_EQ(recv[from], Bytes(1000, static_cast<uint8_t>(from)));
  }
}

// A wait that runs out is final (abandon_check covers it: MPI is fenced); waitFor leaves the
// collective in flight, so a late rank can still join it.
TEST(MpiCollectives, ALateRankJoinsACollectiveThatWaitForGaveUpOnForNow) {
  auto c = world();
  std::vector<float> x(16, 1.0f);
  const bool late = c->rank() == c->size() - 1;
  if (!late) {
    auto work = c->allreduce(x.data(), 16);
    EXPECT_FALSE(work->waitFor(std::chrono::milliseconds(500)))
        << "allreduce completed without the last rank";
    EXPECT_TRUE(work->waitFor(kWait));  // the late rank joins below
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    c->allreduce(x.data(), 16)->wait(kWait);
  }
  EXPECT_EQ(x[0], static_cast<float>(c->size()));
  c->barrier()->wait(kWait);
}

}  // namespace
}  // namespace cdl::comm
