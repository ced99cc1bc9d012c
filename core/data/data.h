#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cdl::core {

// A labelled image set in memory: count images of rows x cols uint8 pixels, row-major, one after
// another, and one label (0..classes-1) per image. A text set (tokens, Note [Text data]) holds
// count windows of cols tokens instead (rows 1, no labels): a model reads a window's first
// cols - 1 tokens and predicts each one's successor.
struct ImageSet {
  int64_t count = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int classes = 10;
  std::vector<uint8_t> pixels;  // count * rows * cols
  std::vector<uint8_t> labels;  // count (none in a text set)
  bool tokens = false;
};

// Note [Text data]
// data.dataset text: every regular file of the folder data.path (sorted by name; symbolic links
// and *.dat index files skipped, as in Debian's fortunes package, the default corpus), read as
// bytes and joined; a byte is a token (256 classes), so bits per token are bits per character of
// ASCII text. The first 90% of the bytes are the train split and the rest the test split, each cut
// into windows of context + 1 bytes that start every context bytes (a window's last byte is the
// next one's first), so every byte but a split's first is predicted exactly once per epoch. A
// missing or empty folder, a corpus over 256 MiB, or a split shorter than one window is a
// cdl::Error naming the folder.
ImageSet loadText(const std::string& dir, const std::string& split, int64_t context);

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
