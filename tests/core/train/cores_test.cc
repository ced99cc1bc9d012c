#include "core/train/cores.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "tests/support/thread_ranks.h"

namespace cdl::core {
namespace {

// A mask of CPUs first..last.
std::vector<uint8_t> cpus(int first, int last) {
  std::vector<uint8_t> m(128, 0);
  for (int c = first; c <= last; ++c) m[static_cast<size_t>(c / 8)] |= uint8_t(1u << (c % 8));
  return m;
}

TEST(DefaultThreads, RanksOfOneMachineSplitTheCpusTheyShare) {
  // Four emulated nodes (network namespaces) of one 2-CPU machine: one thread each, not two.
  std::vector<Placement> ns(4, Placement{"boot-a", cpus(0, 1)});
  for (int r = 0; r < 4; ++r) EXPECT_EQ(defaultThreads(ns, r), 1) << r;
  // Two ranks on each of two 16-CPU machines.
  const std::vector<Placement> two = {
      {"a", cpus(0, 15)}, {"a", cpus(0, 15)}, {"b", cpus(0, 15)}, {"b", cpus(0, 15)}};
  for (int r = 0; r < 4; ++r) EXPECT_EQ(defaultThreads(two, r), 8) << r;
  // Bound to sockets of 8 CPUs, two ranks each; bound to 4 cores each.
  const std::vector<Placement> sockets = {
      {"a", cpus(0, 7)}, {"a", cpus(0, 7)}, {"a", cpus(8, 15)}, {"a", cpus(8, 15)}};
  for (int r = 0; r < 4; ++r) EXPECT_EQ(defaultThreads(sockets, r), 4) << r;
  const std::vector<Placement> bound = {{"a", cpus(0, 3)}, {"a", cpus(4, 7)}, {"a", cpus(8, 11)}};
  for (int r = 0; r < 3; ++r) EXPECT_EQ(defaultThreads(bound, r), 4) << r;
  // More ranks than CPUs still get one thread each.
  const std::vector<Placement> crowded(5, Placement{"a", cpus(0, 0)});
  EXPECT_EQ(defaultThreads(crowded, 2), 1);
}

TEST(DefaultThreads, TheCollectiveGathersEveryRanksPlacement) {
  const Placement here = thisPlacement();
  const int cpusHere = cpuCount(here.cpus);
  ASSERT_GE(cpusHere, 1);
  test::spawn(3, [&](int r, std::shared_ptr<comm::Communicator> c) {
    std::string why;
    // Three ranks (threads of this process) on one machine with one mask.
    EXPECT_EQ(defaultThreads(*c, &why), std::max(1, cpusHere / 3)) << r;
    EXPECT_EQ(why, std::to_string(cpusHere) +
                       " CPUs in its affinity mask, shared by 3 ranks on "
                       "its machine");
  });
}

}  // namespace
}  // namespace cdl::core
