#include "comm/transport/work.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

std::exception_ptr errorNamed(const std::string& what) {
  try {
    CDL_THROW(what);
  } catch (...) {
    return std::current_exception();
  }
}

TEST(Work, WaitRethrowsTheErrorTheOperationFinishedWith) {
  Work w("allreduce of 4 floats");
  w.finish(errorNamed("peer 2 sent garbage"));
  w.finish();  // the first finish wins
  EXPECT_TRUE(w.completed());
  try {
    w.wait(std::chrono::seconds(1));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("peer 2 sent garbage"), std::string::npos);
  }
}

TEST(Work, AWaitThatOutlastsItsTimeoutNamesTheOperation) {
  Work w("barrier (collective #7)");
  try {
    w.wait(std::chrono::milliseconds(20));
    ADD_FAILURE() << "no timeout";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("barrier (collective #7) did not complete"), std::string::npos) << m;
    EXPECT_NE(m.find("CDL_COMM_TIMEOUT"), std::string::npos) << m;
  }
  EXPECT_FALSE(w.completed());
}

// An operation that counts how often it is abandoned.
class CountingWork : public Work {
 public:
  using Work::Work;
  void abandon() override { ++abandoned; }
  int abandoned = 0;
};

TEST(Work, ATimeoutAbandonsTheOperationAndWaitForDoesNot) {
  CountingWork w("allreduce (collective #3)");
  EXPECT_FALSE(w.waitFor(std::chrono::milliseconds(10)));
  EXPECT_FALSE(w.waitFor(std::chrono::seconds(0)));  // a poll, not a wait without end
  EXPECT_EQ(w.abandoned, 0);
  EXPECT_THROW(w.wait(std::chrono::milliseconds(10)), Error);
  EXPECT_EQ(w.abandoned, 1);
  w.finish();
  EXPECT_TRUE(w.waitFor(std::chrono::milliseconds(10)));
}

TEST(Work, AnAbandonedPhasedWorkAbandonsItsStepsInFlightAndFails) {
  auto step = std::make_shared<CountingWork>("sendRecv to rank 1");
  PhasedWork w("ring allreduce", {[&] { return std::vector<std::shared_ptr<Work>>{step}; }});
  EXPECT_THROW(w.wait(std::chrono::milliseconds(10)), Error);
  EXPECT_EQ(step->abandoned, 1);
  try {
    w.wait(std::chrono::seconds(1));
    ADD_FAILURE() << "an abandoned work waited without error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ring allreduce was abandoned"), std::string::npos)
        << e.what();
  }
}

// A limit beyond what the clock's deadline can hold waits as if there were none, instead of
// overflowing into a deadline already past.
TEST(Work, AnEnormousTimeoutWaitsInsteadOfExpiringAtOnce) {
  Work w("op");
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    w.finish();
  });
  EXPECT_NO_THROW(w.wait(std::chrono::duration<double>(1e12)));
  t.join();
}

TEST(Work, AnotherThreadsFinishWakesTheWaiter) {
  Work w("op");
  std::thread t([&] { w.finish(); });
  EXPECT_NO_THROW(w.wait(std::chrono::seconds(30)));
  t.join();
}

TEST(PhasedWork, PhasesRunInOrderEachAfterTheOperationsOfTheLastCompleted) {
  auto first = std::make_shared<Work>("first step");
  std::vector<int> order;
  PhasedWork w("two steps", {[&] {
                               order.push_back(1);
                               return std::vector<std::shared_ptr<Work>>{first};
                             },
                             [&] {
                               order.push_back(2);
                               return std::vector<std::shared_ptr<Work>>{};
                             }});
  EXPECT_FALSE(w.completed());
  EXPECT_EQ(order, std::vector<int>{1});
  first->finish();
  EXPECT_TRUE(w.completed());
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_NO_THROW(w.wait(std::chrono::seconds(1)));
}

TEST(PhasedWork, AFailedStepFailsTheWholeWorkAndLaterPhasesDoNotRun) {
  auto step = std::make_shared<Work>("step");
  bool ranSecond = false;
  PhasedWork w("ring", {[&] { return std::vector<std::shared_ptr<Work>>{step}; },
                        [&] {
                          ranSecond = true;
                          return std::vector<std::shared_ptr<Work>>{};
                        }});
  step->finish(errorNamed("rank 1 vanished"));
  EXPECT_THROW(w.wait(std::chrono::seconds(1)), Error);
  EXPECT_FALSE(ranSecond);
}

TEST(PhasedWork, ATimeoutNamesTheStepStillPending) {
  auto step = std::make_shared<Work>("receive of 8 bytes from rank 2");
  PhasedWork w("allreduce (ring)", {[&] { return std::vector<std::shared_ptr<Work>>{step}; }});
  try {
    w.wait(std::chrono::milliseconds(20));
    ADD_FAILURE() << "no timeout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("receive of 8 bytes from rank 2"), std::string::npos)
        << e.what();
  }
}

TEST(PhasedWork, APhaseThatThrowsFailsTheWork) {
  PhasedWork w("bad", {[]() -> std::vector<std::shared_ptr<Work>> { CDL_THROW("cannot post"); }});
  EXPECT_TRUE(w.completed());
  EXPECT_THROW(w.wait(std::chrono::seconds(1)), Error);
}

}  // namespace
}  // namespace cdl::comm
