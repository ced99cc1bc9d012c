#include "core/run_folder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/files.h"
#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"
#include "tests/support/thread_ranks.h"

namespace cdl::core {
namespace {

using ::testing::HasSubstr;

class RunFolderTest : public ::testing::TestWithParam<int> {
 protected:
  int size() const { return GetParam(); }

  // Runs checkRunFolder on every rank with the steps stepsOf(rank); returns how many ranks threw
  // an error containing `expected` (the others must not throw at all).
  int refusals(bool resume, const std::function<std::vector<int64_t>(int)>& stepsOf,
               const std::string& expected) {
    std::atomic<int> n{0};
    test::spawn(size(), [&](int r, std::shared_ptr<comm::Communicator> c) {
      try {
        checkRunFolder(*c, dir_, stepsOf(r), resume);
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(expected));
        ++n;
      }
    });
    return n;
  }

  test::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_P(RunFolderTest, AFreshRunInAnEmptyFolderIsAccepted) {
  EXPECT_EQ(refusals(
                false, [](int) { return std::vector<int64_t>{}; }, ""),
            0);
}

TEST_P(RunFolderTest, AFreshRunRefusesAFolderWithAMetricsLogOnEveryRank) {
  std::ofstream(dir_ + "/metrics.jsonl") << "{}\n";
  EXPECT_EQ(refusals(
                false, [](int) { return std::vector<int64_t>{}; }, "already holds a run"),
            size());
}

// One rank's leftover checkpoint must stop all of them before anything is overwritten.
TEST_P(RunFolderTest, AFreshRunRefusesAFolderWhereOneRankHasACheckpoint) {
  const int last = size() - 1;
  auto steps = [last](int r) {
    return r == last ? std::vector<int64_t>{5} : std::vector<int64_t>{};
  };
  EXPECT_EQ(refusals(false, steps, "already holds a run"), size());
}

TEST_P(RunFolderTest, AResumeNeedsACheckpointOfEveryRank) {
  auto all = [](int) { return std::vector<int64_t>{4}; };
  EXPECT_EQ(refusals(true, all, ""), 0);
  auto notRank0 = [](int r) { return r == 0 ? std::vector<int64_t>{} : std::vector<int64_t>{4}; };
  EXPECT_EQ(refusals(true, notRank0, "1 of " + std::to_string(size()) + " ranks have none"),
            size());
}

TEST_P(RunFolderTest, TheCommonResumeStepIsTheSmallestOfTheRanksNewestSteps) {
  // Rank r holds steps 10, 20, ..., 10 * (r + 2): the newest all share is 20 (rank 0's newest).
  std::vector<int64_t> common(size(), -1);
  test::spawn(size(), [&](int r, std::shared_ptr<comm::Communicator> c) {
    std::vector<int64_t> steps;
    for (int64_t s = 10; s <= 10 * (r + 2); s += 10) steps.push_back(s);
    common[r] = commonResumeStep(*c, steps);
  });
  for (int r = 0; r < size(); ++r) EXPECT_EQ(common[r], 20) << "rank " << r;
}

TEST(RunFolderResumeTest, ARankThatNoLongerHoldsTheCommonStepIsNamed) {
  // Rank 0's newest is 6; rank 1 kept only 8 and 9.
  std::vector<std::string> errors(2);
  test::spawn(2, [&](int r, std::shared_ptr<comm::Communicator> c) {
    const std::vector<int64_t> steps =
        r == 0 ? std::vector<int64_t>{3, 6} : std::vector<int64_t>{8, 9};
    try {
      commonResumeStep(*c, steps);
    } catch (const Error& e) {
      errors[r] = e.what();
    }
  });
  EXPECT_EQ(errors[0], "");
  EXPECT_THAT(errors[1], HasSubstr("rank 1 has no checkpoint of step 6"));
}

INSTANTIATE_TEST_SUITE_P(Ranks, RunFolderTest, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return "np" + std::to_string(info.param); });

}  // namespace
}  // namespace cdl::core
