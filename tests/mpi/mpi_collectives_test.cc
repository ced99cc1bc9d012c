#include <gtest/gtest.h>
#include <xxhash.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "comm/transport/mpi/mpi_communicator.h"
#include "comm/transport/ring_allreduce.h"
#include "kernels/base/error.h"
#include "tests/support/communicator_contract.h"

namespace cdl::comm {
namespace {

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> c = makeMpiCommunicator();
  return c;
}

constexpr auto kWait = std::chrono::seconds(60);

using test::sameOnEveryRank;

// The communicator contract (tests/support/communicator_contract.h) over MPI processes.
TEST(MpiCollectives, KeepTheCommunicatorContract) { test::expectCommunicatorContract(*world()); }

// Note [Allreduce choice]: on three ranks or more the first allreduce of kRingProbeFloats floats
// or more measures both algorithms, once, and every rank takes the same choice; on two nothing is
// measured. Every size sums right on every rank either way.
TEST(MpiCollectives, TheAllreduceAlgorithmIsChosenByMeasurementAlikeOnEveryRank) {
  auto c = makeMpiCommunicator();
  std::vector<float> small(1000, 1.0f);
  c->allreduce(small.data(), 1000)->wait(kWait);
  EXPECT_EQ(c->allreduceChoice(), "") << "measured below kRingProbeFloats";
  for (int64_t n : {kRingProbeFloats, int64_t{3000}, int64_t{200000}, kRingProbeFloats * 8 + 5}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[i] = float(c->rank() + 1) + float(i % 7);
    c->allreduce(x.data(), n)->wait(kWait);
    for (int64_t i = 0; i < n; ++i) {
      const double want = c->size() * (c->size() + 1) / 2.0 + c->size() * double(i % 7);
      ASSERT_EQ(x[i], want) << "n=" << n << " i=" << i;
    }
  }
  const std::string choice = c->allreduceChoice();
  if (c->size() <= 2) {
    EXPECT_EQ(choice, "") << "two ranks never take the ring";
    return;
  }
  EXPECT_TRUE(choice.rfind("the ring from ", 0) == 0 ||
              choice.rfind("Open MPI's allreduce at every size", 0) == 0)
      << choice;
  EXPECT_NE(choice.find("measured on " + std::to_string(c->size()) + " ranks"), std::string::npos)
      << choice;
  EXPECT_TRUE(sameOnEveryRank(*c, choice.data(), choice.size()))
      << "the ranks chose otherwise than rank 0: " << choice;
  // Note [TCP ring messages]: on by default, off by CDL_TCP_RING=off (the np3_mpi_ring entry).
  const char* knob = std::getenv("CDL_TCP_RING");
  const bool tcp = knob == nullptr || std::string(knob) != "off";
  EXPECT_NE(choice.find(tcp ? "the ring's messages over TCP" : "the ring's messages over MPI"),
            std::string::npos)
      << choice;
}

// Note [TCP ring messages]: messages to the next rank and from the previous one go over TCP,
// the others over MPI, by direction, so both ends agree. One exchange with each neighbour both
// ways, in flight together with one tag, mixes the two in one sendRecv on three ranks or more;
// on two, both exchanges are with the same peer and its messages come in the order sent.
TEST(MpiCollectives, ExchangesWithBothNeighboursBothWaysDeliverEachMessage) {
  auto c = world();
  const int size = c->size(), r = c->rank();
  const int next = (r + 1) % size, prev = (r + size - 1) % size;
  for (size_t n : {size_t{1}, size_t{300000}}) {
    std::vector<int> toNext(n, 1000 * r + 1), toPrev(n, 1000 * r + 2), fromNext(n), fromPrev(n);
    auto a = c->sendRecv(toNext.data(), n * sizeof(int), next, fromNext.data(), n * sizeof(int),
                         next, 11);
    auto b = c->sendRecv(toPrev.data(), n * sizeof(int), prev, fromPrev.data(), n * sizeof(int),
                         prev, 11);
    b->wait(kWait);
    a->wait(kWait);
    // With two ranks the peer's first message with the tag (to its next) meets this rank's first
    // receive with the tag (from its next).
    const int wantFromNext = size == 2 ? 1000 * next + 1 : 1000 * next + 2;
    const int wantFromPrev = size == 2 ? 1000 * prev + 2 : 1000 * prev + 1;
    EXPECT_EQ(fromNext, std::vector<int>(n, wantFromNext)) << "rank " << r << ", n " << n;
    EXPECT_EQ(fromPrev, std::vector<int>(n, wantFromPrev)) << "rank " << r << ", n " << n;
  }
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

// Note [Collective order], Note [Progress in flight]: gathers, exchanges and broadcasts in flight
// together, each rank waiting for them in an order of its own, complete with their own bytes: no
// MPI collective is called at a phase change, and a wait advances the other Works in flight.
TEST(MpiCollectives, GathersAndExchangesWaitedForInRankOrdersOfTheirOwnComplete) {
  auto c = world();
  const int size = c->size(), r = c->rank();
  constexpr int kRounds = 6;
  std::vector<Bytes> mine(kRounds), all(kRounds);
  std::vector<std::vector<size_t>> sizes(kRounds);
  std::vector<std::vector<Bytes>> send(kRounds, std::vector<Bytes>(size)), recv(kRounds);
  std::vector<std::shared_ptr<Work>> works;
  for (int k = 0; k < kRounds; ++k) {
    mine[k].assign(static_cast<size_t>(1000 * (k + 1) + 7 * r), static_cast<uint8_t>(16 * k + r));
    works.push_back(c->allgatherv(mine[k], &all[k], &sizes[k]));
    for (int to = 0; to < size; ++to) {
      send[k][to].assign(static_cast<size_t>(500 * k + 3 * to + r), static_cast<uint8_t>(k + to));
    }
    works.push_back(c->alltoallv(send[k], &recv[k]));
  }
  // Even ranks wait from the last issued back to the first, odd ones the other way round, without
  // polling first: each waits for Works whose later phases only the other's polls would start.
  if (r % 2 == 0) {
    for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait(kWait);
  } else {
    for (auto& w : works) w->wait(kWait);
  }
  Bytes root(static_cast<size_t>(r == 0 ? 4321 : 0), 0x5a);
  c->broadcast(&root, 0)->wait(kWait);
  EXPECT_EQ(root, Bytes(4321, 0x5a));
  for (int k = 0; k < kRounds; ++k) {
    size_t off = 0;
    ASSERT_EQ(sizes[k].size(), static_cast<size_t>(size));
    for (int from = 0; from < size; ++from) {
      const size_t len = static_cast<size_t>(1000 * (k + 1) + 7 * from);
      ASSERT_EQ(sizes[k][from], len) << "round " << k << " from rank " << from;
      EXPECT_EQ(Bytes(all[k].begin() + off, all[k].begin() + off + len),
                Bytes(len, static_cast<uint8_t>(16 * k + from)))
          << "gather " << k << " from rank " << from;
      off += len;
      EXPECT_EQ(recv[k][from],
                Bytes(static_cast<size_t>(500 * k + 3 * r + from), static_cast<uint8_t>(k + r)))
          << "exchange " << k << " from rank " << from;
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
