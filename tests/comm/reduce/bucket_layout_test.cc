#include "comm/reduce/bucket_layout.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

std::vector<LayoutParam> sizes(std::vector<int64_t> numels, std::string group = "none") {
  std::vector<LayoutParam> out;
  for (int64_t n : numels) out.push_back({n, group});
  return out;
}

TEST(BucketLayout, ReverseOrderFillsTheSmallFirstBucketThenTheLargeOnes) {
  // 4 bytes per element: caps of 40 and 100 bytes are 10 and 25 elements.
  const auto b = layOutBuckets(sizes({5, 20, 4, 6, 3}), 40, 100);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].params, (std::vector<int>{4, 3}));  // 3 + 6 fit in 10; + 4 would not
  EXPECT_EQ(b[0].offsets, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(b[0].numel, 9);
  EXPECT_EQ(b[1].params, (std::vector<int>{2, 1}));  // 4 + 20 fit in 25
  EXPECT_EQ(b[2].params, (std::vector<int>{0}));
  EXPECT_EQ(b[2].numel, 5);
}

TEST(BucketLayout, AParameterLargerThanTheCapGetsABucketOfItsOwn) {
  const auto b = layOutBuckets(sizes({100, 1}), 8, 8);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].params, std::vector<int>{1});
  EXPECT_EQ(b[1].params, std::vector<int>{0});
  EXPECT_EQ(b[1].numel, 100);
}

TEST(BucketLayout, DifferentGroupsNeverShareABucketAndEmptyInputGivesNone) {
  std::vector<LayoutParam> p = {{2, "qsgd"}, {2, "qsgd"}, {2, "none"}, {2, "qsgd"}};
  const auto b = layOutBuckets(p, 1 << 20, 1 << 20);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].params, std::vector<int>{3});
  EXPECT_EQ(b[1].params, std::vector<int>{2});
  EXPECT_EQ(b[2].params, (std::vector<int>{1, 0}));
  EXPECT_TRUE(layOutBuckets({}, 4, 4).empty());
  EXPECT_THROW(layOutBuckets(p, 0, 4), Error);
}

}  // namespace
}  // namespace cdl::comm
