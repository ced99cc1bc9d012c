#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "comm/transport/communicator.h"
#include "kernels/base/error.h"
#include "tests/support/communicator_contract.h"
#include "tests/support/error_of.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

class LocalCollectives : public ::testing::TestWithParam<std::tuple<int, int64_t>> {};

// The communicator contract (tests/support/communicator_contract.h) on thread-ranks.
TEST_P(LocalCollectives, KeepTheCommunicatorContract) {
  const auto [size, n] = GetParam();
  test::spawnRanks(size, [&, n = n](int, Communicator& c) {
    test::expectAllreduceContract(c, n);
    test::expectExchangeContract(c, std::min<int64_t>(n, 5000));
  });
}

INSTANTIATE_TEST_SUITE_P(RanksBySizes, LocalCollectives,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 8),
                                            ::testing::Values<int64_t>(0, 1, 1000, (1 << 20) + 3)));

TEST(LocalCommunicator, MismatchedCollectivesFailOnEveryRankNamingBoth) {
  std::vector<std::string> messages(2);
  auto group = makeLocalGroup(2);
  test::onThreadRanks(2, [&](int r) {
    std::vector<float> x(r == 0 ? 10 : 11);
    messages[r] = test::errorOf([&] {
      group[r]->allreduce(x.data(), static_cast<int64_t>(x.size()))->wait(std::chrono::seconds(30));
    });
  });
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
