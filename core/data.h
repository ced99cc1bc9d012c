#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cdl::core {

// A labelled image set in memory: count images of rows x cols uint8 pixels, row-major, one after
// another, and one label (0..classes-1) per image.
struct ImageSet {
  int64_t count = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int classes = 10;
  std::vector<uint8_t> pixels;  // count * rows * cols
  std::vector<uint8_t> labels;  // count
};

// Reads an IDX image file (magic 0x00000803: uint8, 3 dimensions) and its IDX label file (magic
// 0x00000801: uint8, 1 dimension), each gzip-compressed or plain (told apart by the gzip magic).
// A missing, unreadable, truncated, corrupt or mismatched file (wrong magic, dimensions, counts
// that differ, trailing bytes, a label >= classes) is a cdl::Error naming the file and what is
// wrong.
ImageSet readIdx(const std::string& imagesPath, const std::string& labelsPath, int classes = 10);

// The "train" or "test" split of Fashion-MNIST in dir: {train,t10k}-{images-idx3,labels-idx1}-
// ubyte, with or without .gz. An unknown split or missing files are errors naming the path (and
// that Debian's dataset-fashion-mnist package provides them).
ImageSet loadFashionMnist(const std::string& dir, const std::string& split);

// A learnable synthetic set, only for configs that ask for it by name: each class has a fixed
// random prototype image; an example is its class prototype plus noise, with a label uniform over
// the classes. Deterministic in (count, seed) on every platform. The prototypes depend on neither,
// so the train and test splits of one config, drawn with different seeds, share them.
ImageSet makeSynthetic(int64_t count, uint64_t seed, int64_t rows = 28, int64_t cols = 28,
                       int classes = 10);

// Distributed sampling (the semantics of PyTorch's DistributedSampler with drop_last): the
// indices 0..n-1, permuted by (seed, epoch) when shuffle is set (the same permutation on every
// rank), cut to floor(n / size) * size, and dealt round-robin: rank r gets positions r, r + size,
// ... So the shards of one epoch are disjoint, have equal length, and together cover all but
// fewer than size examples; every epoch reshuffles.
std::vector<int64_t> shardIndices(int64_t n, int rank, int size, uint64_t seed, int64_t epoch,
                                  bool shuffle);

// Evaluation sharding: every index exactly once over the ranks, in order (rank r gets r,
// r + size, ...), so shards may differ in length by one.
std::vector<int64_t> evalShard(int64_t n, int rank, int size);

}  // namespace cdl::core
