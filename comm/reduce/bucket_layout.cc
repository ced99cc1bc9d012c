#include "comm/reduce/bucket_layout.h"

#include "kernels/base/error.h"

namespace cdl::comm {

std::vector<BucketLayout> layOutBuckets(const std::vector<LayoutParam>& params,
                                        int64_t firstBucketBytes, int64_t bucketBytes) {
  CDL_CHECK(bucketBytes >= 4 && firstBucketBytes >= 4,
            "reducer: bucket sizes must be at least one float");
  std::vector<BucketLayout> buckets;
  std::vector<std::string> groups;  // of each bucket
  for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {
    const LayoutParam& p = params[static_cast<size_t>(i)];
    CDL_CHECK(p.numel >= 0, "reducer: parameter #", i, " has ", p.numel, " elements");
    bool fresh = buckets.empty() || groups.back() != p.group;
    if (!fresh) {
      const int64_t cap = buckets.size() == 1 ? firstBucketBytes : bucketBytes;
      fresh = 4 * buckets.back().numel + 4 * p.numel > cap;
    }
    if (fresh) {
      buckets.emplace_back();
      groups.push_back(p.group);
    }
    BucketLayout& b = buckets.back();
    b.params.push_back(i);
    b.offsets.push_back(b.numel);
    b.numel += p.numel;
  }
  return buckets;
}

}  // namespace cdl::comm
