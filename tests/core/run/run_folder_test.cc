#include "core/run/run_folder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <unistd.h>

#include "core/run/checkpoint.h"
#include "core/run/files.h"
#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"
#include "tests/support/thread_ranks.h"

namespace cdl::core {
namespace {

using ::testing::HasSubstr;

// Real checkpoint files of a tiny model for each rank and step; returns the folder.
std::string writeCheckpoints(const test::TempDir& tmp, int ranks,
                             const std::function<std::vector<int64_t>(int)>& stepsOf) {
  const std::string dir = tmp.path() + "/checkpoints";
  makeDirs(dir);
  torch::nn::Linear model(2, 2);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  for (int r = 0; r < ranks; ++r) {
    for (const int64_t s : stepsOf(r)) {
      TrainState st;
      st.step = s;
      st.rank = r;
      st.worldSize = ranks;
      saveCheckpoint(dir, *model, opt, st);
    }
  }
  return dir;
}

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

TEST_P(RunFolderTest, TheCommonResumeStepIsTheNewestThatEveryRankHolds) {
  // Rank r holds steps 10, 20, ..., 10 * (r + 2): the newest all share is 20 (rank 0's newest).
  const auto stepsOf = [](int r) {
    std::vector<int64_t> steps;
    for (int64_t s = 10; s <= 10 * (r + 2); s += 10) steps.push_back(s);
    return steps;
  };
  test::TempDir tmp;
  const std::string dir = writeCheckpoints(tmp, size(), stepsOf);
  std::vector<int64_t> common(size(), -1);
  test::spawn(size(), [&](int r, std::shared_ptr<comm::Communicator> c) {
    common[r] = commonResumeStep(*c, dir, checkpointSteps(dir, r));
  });
  for (int r = 0; r < size(); ++r) EXPECT_EQ(common[r], 20) << "rank " << r;
}

TEST(RunFolderResumeTest, WithoutACommonStepEveryRankNamesWhatEachHolds) {
  // Rank 0's steps are 3 and 6; rank 1 kept only 8 and 9.
  test::TempDir tmp;
  const std::string dir = writeCheckpoints(tmp, 2, [](int r) {
    return r == 0 ? std::vector<int64_t>{3, 6} : std::vector<int64_t>{8, 9};
  });
  std::vector<std::string> errors(2);
  test::spawn(2, [&](int r, std::shared_ptr<comm::Communicator> c) {
    try {
      commonResumeStep(*c, dir, checkpointSteps(dir, r));
    } catch (const Error& e) {
      errors[r] = e.what();
    }
  });
  for (const std::string& e : errors) {
    EXPECT_THAT(e, HasSubstr("no step of which every rank holds an intact checkpoint"));
    EXPECT_THAT(e, HasSubstr("rank 0: 3 6; rank 1: 8 9"));
  }
}

// A corrupt or truncated newest file is skipped with a warning: the newest step every rank holds
// intact is taken, and with none left every rank says so.
TEST(RunFolderResumeTest, ACorruptNewestCheckpointFallsBackToTheNextCommonStep) {
  test::TempDir tmp;
  const std::string dir = writeCheckpoints(tmp, 2, [](int) { return std::vector<int64_t>{4, 8}; });
  const std::string newest = checkpointPath(dir, 8, 0);
  {
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    char c = 0;
    f.read(&c, 1);
    f.seekp(200);
    c = static_cast<char>(c ^ 0x10);
    f.write(&c, 1);
  }
  EXPECT_THAT(checkpointProblem(newest), HasSubstr("is corrupt: its content hash is"));
  EXPECT_EQ(checkpointProblem(checkpointPath(dir, 4, 0)), "");
  std::vector<int64_t> common(2, -1);
  test::spawn(2, [&](int r, std::shared_ptr<comm::Communicator> c) {
    common[r] = commonResumeStep(*c, dir, checkpointSteps(dir, r));
  });
  EXPECT_EQ(common, (std::vector<int64_t>{4, 4}));

  ASSERT_EQ(::truncate(checkpointPath(dir, 4, 1).c_str(), 50), 0);
  EXPECT_THAT(checkpointProblem(checkpointPath(dir, 4, 1)), HasSubstr("is truncated"));
  std::vector<std::string> errors(2);
  test::spawn(2, [&](int r, std::shared_ptr<comm::Communicator> c) {
    try {
      commonResumeStep(*c, dir, checkpointSteps(dir, r));
    } catch (const Error& e) {
      errors[r] = e.what();
    }
  });
  for (const std::string& e : errors) EXPECT_THAT(e, HasSubstr("rank 0: 4; rank 1: 8"));
}

INSTANTIATE_TEST_SUITE_P(Ranks, RunFolderTest, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return "np" + std::to_string(info.param); });

}  // namespace
}  // namespace cdl::core
