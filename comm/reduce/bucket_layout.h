#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cdl::comm {

// A parameter as the bucket layout sees it.
struct LayoutParam {
  int64_t numel = 0;
  std::string group;  // parameters of different groups (reduction schemes) never share a bucket
};

// One bucket: its parameters (indices into the layout's input) in bucket order, where each one's
// elements start in the bucket's flat buffer, and the buffer's length.
struct BucketLayout {
  std::vector<int> params;
  std::vector<int64_t> offsets;
  int64_t numel = 0;
};

// Note [Bucket layout]
// Lays parameters out in reverse registration order (roughly the order backward produces their
// gradients, as DDP does), filling a bucket until the next parameter would take it past its cap:
// firstBucketBytes for the first bucket (so communication starts early in backward), bucketBytes
// for the others. A parameter larger than the cap gets a bucket of its own; a change of group
// starts a new bucket. The same parameters give the same layout on every rank. Sizes are fp32
// bytes (4 per element).
std::vector<BucketLayout> layOutBuckets(const std::vector<LayoutParam>& params,
                                        int64_t firstBucketBytes, int64_t bucketBytes);

}  // namespace cdl::comm
