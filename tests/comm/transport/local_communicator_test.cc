#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "comm/transport/communicator.h"
#include "kernels/base/error.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

class LocalCollectives : public ::testing::TestWithParam<std::tuple<int, int64_t>> {};

TEST_P(LocalCollectives, AllreduceSumsAndEveryRankHoldsTheSameBits) {
  const auto [size, n] = GetParam();
  std::vector<std::vector<float>> data(size);
  test::spawnRanks(size, [&, n = n](int r, Communicator& c) {
    data[r].resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) data[r][i] = 0.25f * float(r + 1) + 1e-3f * float(i % 97);
    c.allreduce(data[r].data(), n)->wait(std::chrono::seconds(30));
  });
  for (int64_t i = 0; i < n; ++i) {
    double want = 0;
    for (int r = 0; r < size; ++r) want += 0.25 * (r + 1) + 1e-3 * double(i % 97);
    ASSERT_NEAR(data[0][i], want, 1e-4 * size) << i;
    for (int r = 1; r < size; ++r) ASSERT_EQ(data[r][i], data[0][i]);
  }
}

TEST_P(LocalCollectives, AllgathervAndAlltoallvDeliverEveryRanksBytes) {
  const auto [size, n] = GetParam();
  const int64_t m = std::min<int64_t>(n, 5000);
  test::spawnRanks(size, [&, size = size](int r, Communicator& c) {
    Bytes mine(static_cast<size_t>(m + r), static_cast<uint8_t>(r));
    Bytes all;
    std::vector<size_t> sizes;
    c.allgatherv(mine, &all, &sizes)->wait(std::chrono::seconds(30));
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
    c.alltoallv(send, &recv)->wait(std::chrono::seconds(30));
    ASSERT_EQ(static_cast<int>(recv.size()), size);
    for (int from = 0; from < size; ++from) {
      EXPECT_EQ(recv[from], Bytes(static_cast<size_t>(r + from), uint8_t(10 * from + r)));
    }
    Bytes b = r == size - 1 ? Bytes{1, 2, 3} : Bytes{};
    c.broadcast(&b, size - 1)->wait(std::chrono::seconds(30));
    EXPECT_EQ(b, (Bytes{1, 2, 3}));
    c.barrier()->wait(std::chrono::seconds(30));
  });
}

INSTANTIATE_TEST_SUITE_P(RanksBySizes, LocalCollectives,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 8),
                                            ::testing::Values<int64_t>(0, 1, 1000, (1 << 20) + 3)));

TEST(LocalCommunicator, MismatchedCollectivesFailOnEveryRankNamingBoth) {
  std::vector<std::string> messages(2);
  auto group = makeLocalGroup(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::vector<float> x(r == 0 ? 10 : 11);
      try {
        group[r]
            ->allreduce(x.data(), static_cast<int64_t>(x.size()))
            ->wait(std::chrono::seconds(30));
      } catch (const Error& e) {
        messages[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& m : messages) {
    EXPECT_NE(m.find("allreduce of 10 floats"), std::string::npos) << m;
    EXPECT_NE(m.find("allreduce of 11 floats"), std::string::npos) << m;
  }
}

TEST(LocalCommunicator, ARankThatSkipsACollectiveMakesTheOthersTimeOutNamingIt) {
  auto group = makeLocalGroup(3);
  std::vector<float> x(4, 1.0f);
  std::string message;
  std::thread t0([&] {
    try {
      group[0]->allreduce(x.data(), 4)->wait(std::chrono::milliseconds(200));
    } catch (const Error& e) {
      message = e.what();
    }
  });
  std::vector<float> y(4, 1.0f);
  auto pending = group[1]->allreduce(y.data(), 4);  // rank 2 never joins
  t0.join();
  EXPECT_NE(message.find("did not complete"), std::string::npos) << message;
  EXPECT_NE(message.find("rank 2 did not join"), std::string::npos) << message;
  EXPECT_FALSE(pending->completed());
}

}  // namespace
}  // namespace cdl::comm
