// The status side channel of Note [Peer status]: what a timed-out rank learns of the others.
#include "comm/transport/tcp/peer_status.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

namespace cdl::comm {
namespace {

using std::chrono::milliseconds;

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Rank r of a communicator, all ranks in this process: their logs answer on its endpoint.
struct Ranks {
  explicit Ranks(int n) : id(randomNonce()), endpoints(static_cast<size_t>(n), statusEndpoint()) {
    for (int r = 0; r < n; ++r) logs.push_back(registerCollectiveLog(id, r));
  }
  uint64_t id;
  std::vector<Endpoint> endpoints;
  std::vector<std::shared_ptr<CollectiveLog>> logs;
};

void issue(CollectiveLog& log, int count) {
  for (int k = 0; k < count; ++k) log.issued("allreduce #" + std::to_string(k));
}

TEST(PeerStatus, NamesTheRanksThatHaveNotIssuedTheCollectiveWithTheirLatest) {
  Ranks ranks(4);
  issue(*ranks.logs[0], 3);
  issue(*ranks.logs[1], 3);
  issue(*ranks.logs[2], 2);  // stuck before collective #2
  const auto answers = askPeers(ranks.endpoints, 0, ranks.id, milliseconds(2000));
  ASSERT_EQ(answers.size(), 4u);
  for (const PeerAnswer& a : answers) EXPECT_TRUE(a.answered);
  EXPECT_EQ(answers[1].status.issued, 3u);
  EXPECT_EQ(answers[2].status.issued, 2u);
  EXPECT_EQ(answers[2].status.latest, "allreduce #1");
  EXPECT_EQ(answers[3].status.issued, 0u);
  const std::string text = describeMissing(answers, 0, 2, 2.0);
  EXPECT_TRUE(has(text, "rank 2: it has not issued it; its latest collective was issued ")) << text;
  EXPECT_TRUE(has(text, "ago: allreduce #1")) << text;
  EXPECT_TRUE(has(text, "rank 3: it has not issued it; it has issued no collective yet")) << text;
  EXPECT_FALSE(has(text, "rank 1")) << text;
}

TEST(PeerStatus, EveryRankHavingIssuedItMeansTheTransportIsStuck) {
  Ranks ranks(3);
  for (const auto& log : ranks.logs) issue(*log, 5);
  const std::string text =
      describeMissing(askPeers(ranks.endpoints, 1, ranks.id, milliseconds(2000)), 1, 4, 2.0);
  EXPECT_TRUE(has(text, "every rank has issued it, so the transport is stuck")) << text;
}

TEST(PeerStatus, RanksThatCannotBeReachedOrDoNotAnswerAreNamedWithinTheBudget) {
  Ranks ranks(5);
  for (const auto& log : ranks.logs) issue(*log, 1);
  // Rank 1: a listener that never accepts (a stopped process); rank 2: a closed port (a process
  // gone); rank 3: an endpoint of a rank that could not listen; rank 4 answers.
  int port = 0;
  const int silent = listenAnywhere(0, &port, "test");
  ranks.endpoints[1] = localEndpoint(port, "test");
  int closedPort = 0;
  ::close(listenAnywhere(0, &closedPort, "test"));
  ranks.endpoints[2] = localEndpoint(closedPort, "test");
  ranks.endpoints[3] = Endpoint{};
  const auto start = Clock::now();
  const auto answers = askPeers(ranks.endpoints, 0, ranks.id, milliseconds(500));
  EXPECT_LT(secondsSince(start), 10.0) << "the query must end near its budget";
  ::close(silent);
  EXPECT_FALSE(answers[1].answered);
  EXPECT_FALSE(answers[2].answered);
  EXPECT_FALSE(answers[3].answered);
  EXPECT_TRUE(answers[4].answered);
  const std::string text = describeMissing(answers, 0, 0, 0.5);
  EXPECT_TRUE(
      has(text, "waiting for ranks 1, 2, 3: they did not answer a status query within 0.5 s"))
      << text;
  EXPECT_TRUE(has(text, "their processes, hosts or links")) << text;
  EXPECT_FALSE(has(text, "rank 4")) << text;
}

TEST(PeerStatus, OnlyTheCommunicatorAndRankAskedForAnswer) {
  Ranks ranks(2);
  issue(*ranks.logs[1], 1);
  // Another communicator's id: the process answers nothing for it.
  EXPECT_FALSE(askPeers(ranks.endpoints, 0, ranks.id + 1, milliseconds(500))[1].answered);
  // A log that is gone (its communicator freed) answers no more.
  ranks.logs[1].reset();
  const auto answers = askPeers(ranks.endpoints, 0, ranks.id, milliseconds(500));
  EXPECT_FALSE(answers[1].answered);
  EXPECT_TRUE(has(describeMissing(answers, 0, 0, 0.5), "waiting for rank 1: it did not answer"));
}

}  // namespace
}  // namespace cdl::comm
