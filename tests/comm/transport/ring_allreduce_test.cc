#include "comm/transport/ring_allreduce.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

// Thread-ranks take the ring from one float on, so its chunking is reached with small buffers,
// including fewer elements than ranks.
CollectiveOptions ringAlways() {
  CollectiveOptions o;
  o.ringMinFloats = 1;
  return o;
}

class RingAllreduce : public ::testing::TestWithParam<std::tuple<int, int64_t>> {};

TEST_P(RingAllreduce, SumsExactlyAndEveryRankHoldsTheSameBits) {
  const auto [size, n] = GetParam();
  std::vector<std::vector<float>> data(size);
  std::vector<std::string> what(size);
  test::spawnRanks(
      size,
      [&, n = n](int r, Communicator& c) {
        data[r].resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) data[r][i] = float((i * 7 + r * 3) % 11) - 5.0f;
        auto work = c.allreduce(data[r].data(), n);
        what[r] = work->what();
        work->wait(std::chrono::seconds(60));
      },
      ringAlways());
  for (int64_t i = 0; i < n; ++i) {
    float want = 0;
    for (int r = 0; r < size; ++r) want += float((i * 7 + r * 3) % 11) - 5.0f;
    ASSERT_EQ(data[0][i], want) << "element " << i;
  }
  for (int r = 1; r < size; ++r) {
    ASSERT_EQ(std::memcmp(data[r].data(), data[0].data(), data[0].size() * 4), 0) << "rank " << r;
  }
  const bool ring = useRing(ringAlways(), size, n);
  EXPECT_EQ(what[0].find("(ring") != std::string::npos, ring) << what[0];
}

INSTANTIATE_TEST_SUITE_P(RanksBySizes, RingAllreduce,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 5),
                                            ::testing::Values<int64_t>(0, 1, 2, 7, 1000)));

TEST(RingAllreduce, OnlyThreeRanksOrMoreAndLargeEnoughBuffersTakeTheRing) {
  CollectiveOptions o;
  o.ringMinFloats = 100;
  EXPECT_FALSE(useRing(o, 2, 1000));
  EXPECT_FALSE(useRing(o, 3, 99));
  EXPECT_TRUE(useRing(o, 3, 100));
  // Without measurements (the in-process transport), a measured threshold reads as the default.
  EXPECT_EQ(CollectiveOptions{}.ringMinFloats, kMeasuredRingMin);
  EXPECT_TRUE(useRing(CollectiveOptions{}, 4, kDefaultRingMinFloats));
  EXPECT_FALSE(useRing(CollectiveOptions{}, 4, kDefaultRingMinFloats - 1));
}

// Note [Allreduce choice]: the crossover of the two measured lines.
TEST(RingAllreduce, TheCrossoverIsWhereTheRingsLineFallsBelowTheTransports) {
  // transport: 100 + n/100, ring: 500 + n/200 (microseconds): equal at n = 80000.
  const auto t = [](double a, double b, double n) { return (a + n * b) * 1e-6; };
  const int64_t cross = ringCrossover(1000, 9000, t(100, 0.01, 1000), t(100, 0.01, 9000),
                                      t(500, 0.005, 1000), t(500, 0.005, 9000));
  EXPECT_NEAR(static_cast<double>(cross), 80000.0, 1.0);
  // A ring that starts lower and is less steep wins from the start.
  EXPECT_EQ(ringCrossover(1000, 9000, t(500, 0.01, 1000), t(500, 0.01, 9000), t(100, 0.005, 1000),
                          t(100, 0.005, 9000)),
            1);
  // As steep or steeper: the ring from the start when it is the faster at the larger size, else
  // never.
  EXPECT_EQ(ringCrossover(1000, 9000, t(100, 0.01, 1000), t(100, 0.01, 9000), t(500, 0.01, 1000),
                          t(500, 0.01, 9000)),
            INT64_MAX);
  EXPECT_EQ(ringCrossover(1000, 9000, t(100, 0.01, 1000), t(100, 0.01, 9000), t(50, 0.02, 1000),
                          t(50, 0.02, 9000)),
            INT64_MAX);
  EXPECT_EQ(ringCrossover(1000, 9000, t(400, 0.01, 1000), t(400, 0.01, 9000), t(50, 0.02, 1000),
                          t(50, 0.02, 9000)),
            1);
  // Below the smaller probe a transport that grew faster than in proportion between the probes
  // (its line, -2000 + n/10, would cost nothing at 20000 floats) costs in proportion to the size:
  // 4553.6 us at 65536 floats, so the ring (100 + 0.03 n) wins from 100 / (4553.6/65536 - 0.03)
  // = 2533 floats, not from 30000 where the two lines cross.
  EXPECT_NEAR(
      static_cast<double>(ringCrossover(65536, 524288, t(-2000, 0.1, 65536), t(-2000, 0.1, 524288),
                                        t(100, 0.03, 65536), t(100, 0.03, 524288))),
      2533.0, 1.0);
  // A crossing above the smaller probe keeps the lines.
  EXPECT_NEAR(
      static_cast<double>(ringCrossover(1000, 90000, t(-2000, 0.1, 1000), t(-2000, 0.1, 90000),
                                        t(100, 0.03, 1000), t(100, 0.03, 90000))),
      30000.0, 1.0);
  EXPECT_THROW(ringCrossover(9000, 1000, 1, 2, 3, 4), Error);
}

TEST(RingAllreduce, SeveralInFlightTogetherKeepTheirOwnData) {
  const int size = 3;
  std::vector<std::vector<std::vector<float>>> data(size);
  test::spawnRanks(
      size,
      [&](int r, Communicator& c) {
        std::vector<std::shared_ptr<Work>> works;
        data[r].resize(3);
        for (int k = 0; k < 3; ++k) {
          data[r][k].assign(50 + k, float(r + 10 * k));
          works.push_back(c.allreduce(data[r][k].data(), 50 + k));
        }
        for (int k = 2; k >= 0; --k) works[k]->wait(std::chrono::seconds(60));
      },
      ringAlways());
  for (int r = 0; r < size; ++r) {
    for (int k = 0; k < 3; ++k) {
      for (float v : data[r][k]) ASSERT_EQ(v, float(0 + 1 + 2 + 3 * 10 * k)) << r << " " << k;
    }
  }
}

TEST(SendRecv, MessagesWithOneTagArriveInOrderAndSelfSendsWork) {
  std::vector<std::vector<int>> got(2);
  test::spawnRanks(2, [&](int r, Communicator& c) {
    const int peer = 1 - r;
    std::vector<int> in(3, -1);
    std::vector<std::shared_ptr<Work>> works;
    std::vector<int> out = {10 * r, 10 * r + 1, 10 * r + 2};
    for (int k = 0; k < 3; ++k) {
      works.push_back(c.sendRecv(&out[k], sizeof(int), peer, &in[k], sizeof(int), peer, 5));
    }
    for (auto& w : works) w->wait(std::chrono::seconds(30));
    int self = 0;
    const int value = 42 + r;
    c.sendRecv(&value, sizeof(int), r, &self, sizeof(int), r, 6)->wait(std::chrono::seconds(30));
    EXPECT_EQ(self, 42 + r);
    got[r] = in;
  });
  EXPECT_EQ(got[0], (std::vector<int>{10, 11, 12}));
  EXPECT_EQ(got[1], (std::vector<int>{0, 1, 2}));
}

TEST(SendRecv, ASizeThatDiffersFromTheSendersIsAnErrorOnBothSides) {
  std::vector<std::string> messages(2);
  test::spawnRanks(2, [&](int r, Communicator& c) {
    // Rank 0 sends 8 bytes where rank 1 expects 4; the other direction agrees on 4.
    std::vector<uint8_t> out(r == 0 ? 8 : 4), in(4);
    try {
      c.sendRecv(out.data(), out.size(), 1 - r, in.data(), in.size(), 1 - r, 0)
          ->wait(std::chrono::seconds(30));
    } catch (const Error& e) {
      messages[r] = e.what();
    }
  });
  for (const auto& m : messages) {
    EXPECT_NE(m.find("sent 8 bytes but rank 1 expected 4"), std::string::npos) << m;
  }
}

TEST(SendRecv, APeerThatNeverAnswersTimesOutNamingTheStep) {
  auto group = makeLocalGroup(2);
  int out = 1, in = 0;
  try {
    group[0]
        ->sendRecv(&out, sizeof(int), 1, &in, sizeof(int), 1, 3)
        ->wait(std::chrono::milliseconds(100));
    ADD_FAILURE() << "no timeout";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("did not complete"), std::string::npos) << m;
    EXPECT_NE(m.find("to rank 1"), std::string::npos) << m;
  }
}

TEST(Memory, HostTransportsTakeHostMemory) {
  for (const auto& c : makeLocalGroup(2)) EXPECT_EQ(c->memory(), MemoryKind::kHost);
}

}  // namespace
}  // namespace cdl::comm
