#include "comm/reduce/replica_check.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

TEST(ReplicaCheck, EqualItemsPassAndTheFirstDifferenceIsNamedOnEveryRank) {
  test::spawnRanks(3, [&](int, Communicator& c) {
    EXPECT_NO_THROW(requireSameOnEveryRank(c, {"a [2]", "b [3]"}, "model", "fix it", 30));
  });
  std::vector<std::string> messages(3);
  test::spawnRanks(3, [&](int r, Communicator& c) {
    std::vector<std::string> items = {"a [2]", r == 2 ? "b [4]" : "b [3]"};
    if (r == 1) items.push_back("c [1]");
    try {
      requireSameOnEveryRank(c, items, "reducer: parameter", "build the same model", 30);
    } catch (const Error& e) {
      messages[r] = e.what();
    }
  });
  for (const auto& m : messages) {
    EXPECT_NE(m.find("reducer: parameter #2 differs between ranks: rank 0 has '(none)', rank 1 "
                     "has 'c [1]'; build the same model"),
              std::string::npos)
        << m;
  }
}

}  // namespace
}  // namespace cdl::comm
