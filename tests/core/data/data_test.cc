#include "core/data/data.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

namespace fs = std::filesystem;

using Bytes = std::vector<uint8_t>;
using ::testing::AllOf;
using ::testing::HasSubstr;

void putBigEndian32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes idxImages(uint32_t count, uint32_t rows, uint32_t cols, const Bytes& pixels) {
  Bytes out;
  putBigEndian32(out, 0x00000803);
  putBigEndian32(out, count);
  putBigEndian32(out, rows);
  putBigEndian32(out, cols);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

Bytes idxLabels(uint32_t count, const Bytes& labels) {
  Bytes out;
  putBigEndian32(out, 0x00000801);
  putBigEndian32(out, count);
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

void writePlain(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void writeGzip(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes readRaw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string idxError(const std::string& images, const std::string& labels, int classes = 10) {
  return test::errorOf([&] { readIdx(images, labels, classes); });
}

// A small set whose every pixel and label is distinct enough to catch any reordering.
struct Sample {
  static constexpr uint32_t kCount = 5, kRows = 3, kCols = 4;
  Bytes pixels, labels;
  Sample() {
    for (uint32_t i = 0; i < kCount * kRows * kCols; ++i) pixels.push_back(uint8_t(i * 7 + 1));
    labels = {3, 0, 9, 9, 1};
  }
  Bytes images() const { return idxImages(kCount, kRows, kCols, pixels); }
  Bytes labelFile() const { return idxLabels(kCount, labels); }
};

class IdxTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  test::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  Sample sample_;
};

TEST_F(IdxTest, PlainFilesReadBackExactly) {
  writePlain(path("img"), sample_.images());
  writePlain(path("lbl"), sample_.labelFile());
  const ImageSet set = readIdx(path("img"), path("lbl"));
  EXPECT_EQ(set.count, Sample::kCount);
  EXPECT_EQ(set.rows, Sample::kRows);
  EXPECT_EQ(set.cols, Sample::kCols);
  EXPECT_EQ(set.classes, 10);
  EXPECT_EQ(set.pixels, sample_.pixels);
  EXPECT_EQ(set.labels, sample_.labels);
}

TEST_F(IdxTest, GzipFilesReadBackExactlyAndMayMixWithPlain) {
  writeGzip(path("img.gz"), sample_.images());
  writeGzip(path("lbl.gz"), sample_.labelFile());
  writePlain(path("lbl"), sample_.labelFile());
  for (const char* labels : {"lbl.gz", "lbl"}) {
    const ImageSet set = readIdx(path("img.gz"), path(labels));
    EXPECT_EQ(set.count, Sample::kCount);
    EXPECT_EQ(set.rows, Sample::kRows);
    EXPECT_EQ(set.cols, Sample::kCols);
    EXPECT_EQ(set.pixels, sample_.pixels);
    EXPECT_EQ(set.labels, sample_.labels);
  }
}

TEST_F(IdxTest, GzipIsDetectedByMagicNotByName) {
  writeGzip(path("img"), sample_.images());
  writePlain(path("lbl.gz"), sample_.labelFile());
  const ImageSet set = readIdx(path("img"), path("lbl.gz"));
  EXPECT_EQ(set.pixels, sample_.pixels);
  EXPECT_EQ(set.labels, sample_.labels);
}

TEST_F(IdxTest, ClassesBoundLabelsAndAreRecorded) {
  writePlain(path("img"), sample_.images());
  writePlain(path("lbl"), sample_.labelFile());
  EXPECT_EQ(readIdx(path("img"), path("lbl"), 12).classes, 12);
  const std::string e = idxError(path("img"), path("lbl"), 9);
  EXPECT_NE(e.find(path("lbl")), std::string::npos) << e;
  EXPECT_NE(e.find("index 2"), std::string::npos) << e;  // the first label 9
}

TEST_F(IdxTest, TruncatedPlainFileSaysExpectedAndGotBytes) {
  Bytes img = sample_.images();
  img.resize(img.size() - 3);
  writePlain(path("img"), img);
  writePlain(path("lbl"), sample_.labelFile());
  const std::string e = idxError(path("img"), path("lbl"));
  EXPECT_NE(e.find(path("img")), std::string::npos) << e;
  EXPECT_NE(e.find("expected " + std::to_string(img.size() + 3)), std::string::npos) << e;
  EXPECT_NE(e.find("got " + std::to_string(img.size())), std::string::npos) << e;
}

TEST_F(IdxTest, TruncatedHeaderNamesFile) {
  writePlain(path("img"), {0, 0, 8, 3, 0, 0});
  writePlain(path("lbl"), sample_.labelFile());
  const std::string e = idxError(path("img"), path("lbl"));
  EXPECT_NE(e.find(path("img")), std::string::npos) << e;
  EXPECT_NE(e.find("header"), std::string::npos) << e;
}

TEST_F(IdxTest, TruncatedGzipStreamNamesFile) {
  // Large enough that cutting the compressed file leaves part of the deflate stream.
  Bytes pixels(100 * 28 * 28);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t((i * 2654435761u) >> 13);
  writeGzip(path("full.gz"), idxImages(100, 28, 28, pixels));
  Bytes gz = readRaw(path("full.gz"));
  gz.resize(gz.size() / 2);
  writePlain(path("img.gz"), gz);
  writePlain(path("lbl"), idxLabels(100, Bytes(100, 0)));
  const std::string e = idxError(path("img.gz"), path("lbl"));
  EXPECT_NE(e.find(path("img.gz")), std::string::npos) << e;
}

TEST_F(IdxTest, GzipOfTruncatedIdxSaysExpectedAndGotBytes) {
  Bytes lbl = sample_.labelFile();
  lbl.pop_back();
  writePlain(path("img"), sample_.images());
  writeGzip(path("lbl.gz"), lbl);
  const std::string e = idxError(path("img"), path("lbl.gz"));
  EXPECT_NE(e.find(path("lbl.gz")), std::string::npos) << e;
  EXPECT_NE(e.find("expected " + std::to_string(lbl.size() + 1)), std::string::npos) << e;
  EXPECT_NE(e.find("got " + std::to_string(lbl.size())), std::string::npos) << e;
}

TEST_F(IdxTest, CorruptGzipNamesFile) {
  Bytes pixels(50 * 28 * 28);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t(i % 251);
  writeGzip(path("full.gz"), idxImages(50, 28, 28, pixels));
  Bytes gz = readRaw(path("full.gz"));
  ASSERT_GT(gz.size(), 40u);
  for (size_t i = 12; i < gz.size() - 8; i += 5) gz[i] ^= 0x5a;
  writePlain(path("img.gz"), gz);
  writePlain(path("lbl"), idxLabels(50, Bytes(50, 0)));
  const std::string e = idxError(path("img.gz"), path("lbl"));
  EXPECT_NE(e.find(path("img.gz")), std::string::npos) << e;
}

TEST_F(IdxTest, WrongMagicNamesFile) {
  // The files swapped: each has the other's magic.
  writePlain(path("img"), sample_.images());
  writePlain(path("lbl"), sample_.labelFile());
  const std::string e = idxError(path("lbl"), path("img"));
  EXPECT_NE(e.find(path("lbl")), std::string::npos) << e;
  EXPECT_NE(e.find("magic"), std::string::npos) << e;

  Bytes img = sample_.images();
  img[2] = 0x0d;  // float32 element type
  writePlain(path("float"), img);
  const std::string f = idxError(path("float"), path("lbl"));
  EXPECT_NE(f.find(path("float")), std::string::npos) << f;
  EXPECT_NE(f.find("magic"), std::string::npos) << f;
}

TEST_F(IdxTest, ZeroOrHugeDimensionsNameFile) {
  writePlain(path("lbl"), sample_.labelFile());
  writePlain(path("zero"), idxImages(5, 0, 4, {}));
  const std::string e = idxError(path("zero"), path("lbl"));
  EXPECT_NE(e.find(path("zero")), std::string::npos) << e;
  EXPECT_NE(e.find("dimension 1"), std::string::npos) << e;

  writePlain(path("huge"), idxImages(5, 3, 100000, {}));
  const std::string h = idxError(path("huge"), path("lbl"));
  EXPECT_NE(h.find(path("huge")), std::string::npos) << h;
  EXPECT_NE(h.find("dimension 2"), std::string::npos) << h;
}

// A header's claimed size is checked before anything of that size is read: against the file for a
// plain file, against the reader's cap (4 GiB) for a gzip stream, whose size shows only at its end.
TEST_F(IdxTest, AClaimedSizeBeyondTheFileOrTheCapIsRefusedFirst) {
  writePlain(path("lbl"), sample_.labelFile());
  writePlain(path("claims"), idxImages(2000000000, 28, 28, {}));
  const std::string e = idxError(path("claims"), path("lbl"));
  EXPECT_NE(e.find(path("claims")), std::string::npos) << e;
  EXPECT_NE(e.find("more than the reader takes"), std::string::npos) << e;
  writePlain(path("plain"), idxImages(60000, 28, 28, Bytes(100, 0)));
  const std::string p = idxError(path("plain"), path("lbl"));
  EXPECT_NE(p.find("truncated: expected " + std::to_string(16 + 60000 * 28 * 28)),
            std::string::npos)
      << p;
  writeGzip(path("bomb.gz"), idxImages(2000000000, 28, 28, Bytes(1000, 0)));
  const std::string g = idxError(path("bomb.gz"), path("lbl"));
  EXPECT_NE(g.find("more than the reader takes"), std::string::npos) << g;
}

TEST_F(IdxTest, CountMismatchNamesBothFiles) {
  writePlain(path("img"), sample_.images());
  writePlain(path("lbl"), idxLabels(4, {0, 1, 2, 3}));
  const std::string e = idxError(path("img"), path("lbl"));
  EXPECT_NE(e.find(path("img")), std::string::npos) << e;
  EXPECT_NE(e.find(path("lbl")), std::string::npos) << e;
  EXPECT_NE(e.find("mismatch"), std::string::npos) << e;
}

TEST_F(IdxTest, TrailingBytesNameFile) {
  Bytes img = sample_.images();
  img.insert(img.end(), {1, 2, 3});
  writePlain(path("img"), img);
  writeGzip(path("img.gz"), img);
  writePlain(path("lbl"), sample_.labelFile());
  for (const char* name : {"img", "img.gz"}) {
    const std::string e = idxError(path(name), path("lbl"));
    EXPECT_NE(e.find(path(name)), std::string::npos) << e;
    EXPECT_NE(e.find("3 trailing bytes"), std::string::npos) << e;
  }
}

TEST_F(IdxTest, MissingFileNamesPath) {
  writePlain(path("lbl"), sample_.labelFile());
  const std::string e = idxError(path("nope"), path("lbl"));
  EXPECT_NE(e.find(path("nope")), std::string::npos) << e;
}

TEST_F(IdxTest, FashionMnistPrefersGzipAndFallsBackToPlain) {
  Sample other;
  other.labels = {1, 1, 1, 1, 1};
  writeGzip(path("train-images-idx3-ubyte.gz"), sample_.images());
  writePlain(path("train-images-idx3-ubyte"), other.images());
  writePlain(path("train-labels-idx1-ubyte"), other.labelFile());
  const ImageSet set = loadFashionMnist(dir_.string(), "train");
  EXPECT_EQ(set.pixels, sample_.pixels);
  EXPECT_EQ(set.labels, other.labels);
}

TEST_F(IdxTest, FashionMnistMissingFilesNamePathAndDebianPackage) {
  std::string e = "no error";
  try {
    loadFashionMnist(dir_.string(), "test");
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find(path("t10k-images-idx3-ubyte")), std::string::npos) << e;
  EXPECT_NE(e.find("dataset-fashion-mnist"), std::string::npos) << e;
  EXPECT_NE(e.find("/usr/share/datasets/fashion-mnist"), std::string::npos) << e;
}

TEST(FashionMnist, UnknownSplitIsAnError) {
  EXPECT_THROW(loadFashionMnist("/usr/share/datasets/fashion-mnist", "validation"), Error);
}

constexpr const char* kDebianDir = "/usr/share/datasets/fashion-mnist";

TEST(FashionMnist, DebianCopyHasTheKnownShapeAndBalancedClasses) {
  if (!fs::exists(kDebianDir)) GTEST_SKIP() << kDebianDir << " absent (dataset-fashion-mnist)";
  for (const auto& [split, count] : {std::pair<std::string, int64_t>{"train", 60000},
                                     std::pair<std::string, int64_t>{"test", 10000}}) {
    const ImageSet set = loadFashionMnist(kDebianDir, split);
    EXPECT_EQ(set.count, count) << split;
    EXPECT_EQ(set.rows, 28);
    EXPECT_EQ(set.cols, 28);
    ASSERT_EQ(set.pixels.size(), size_t(count * 28 * 28));
    ASSERT_EQ(set.labels.size(), size_t(count));
    std::array<int64_t, 10> perClass{};
    for (uint8_t l : set.labels) {
      ASSERT_LT(l, 10);
      ++perClass[l];
    }
    for (int c = 0; c < 10; ++c) EXPECT_EQ(perClass[c], count / 10) << split << " class " << c;
    EXPECT_GT(*std::max_element(set.pixels.begin(), set.pixels.end()), 0) << split;
  }
}

// The sharding tests run over world sizes including 1 and data set sizes including 0 and sizes
// that do not divide evenly.
class ShardTest : public ::testing::TestWithParam<std::tuple<int64_t, int>> {};

TEST_P(ShardTest, ShardsAreDisjointEqualAndCoverAllButTheRemainder) {
  const auto [n, size] = GetParam();
  for (bool shuffle : {false, true}) {
    std::set<int64_t> seen;
    for (int rank = 0; rank < size; ++rank) {
      const auto shard = shardIndices(n, rank, size, 7, 3, shuffle);
      EXPECT_EQ(int64_t(shard.size()), n / size);
      for (int64_t i : shard) {
        EXPECT_TRUE(i >= 0 && i < n) << i;
        EXPECT_TRUE(seen.insert(i).second) << "index " << i << " on two ranks";
      }
    }
    EXPECT_EQ(int64_t(seen.size()), n / size * size);
  }
}

TEST_P(ShardTest, RanksDealOneSharedPermutation) {
  const auto [n, size] = GetParam();
  // Re-interleaving the shards must give the first floor(n/size)*size entries of the size-1
  // permutation for the same (seed, epoch): every rank shuffles identically.
  const auto whole = shardIndices(n, 0, 1, 11, 2, true);
  const int64_t perRank = n / size;
  for (int rank = 0; rank < size; ++rank) {
    const auto shard = shardIndices(n, rank, size, 11, 2, true);
    for (int64_t k = 0; k < perRank; ++k) EXPECT_EQ(shard[k], whole[rank + k * size]);
  }
}

TEST_P(ShardTest, EvalShardsCoverEveryIndexOnceInOrder) {
  const auto [n, size] = GetParam();
  std::vector<int> hits(static_cast<size_t>(n), 0);
  for (int rank = 0; rank < size; ++rank) {
    const auto shard = evalShard(n, rank, size);
    EXPECT_TRUE(std::is_sorted(shard.begin(), shard.end()));
    EXPECT_LE(int64_t(shard.size()), n / size + 1);
    EXPECT_GE(int64_t(shard.size()), n / size);
    for (int64_t i : shard) {
      ASSERT_TRUE(i >= 0 && i < n) << i;
      EXPECT_EQ(i % size, rank);
      ++hits[i];
    }
  }
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i], 1) << "index " << i;
}

INSTANTIATE_TEST_SUITE_P(Sizes, ShardTest,
                         ::testing::Combine(::testing::Values<int64_t>(0, 1, 2, 7, 100, 1001),
                                            ::testing::Values(1, 2, 3, 4, 8)));

TEST(Shard, UnshuffledIsRoundRobin) {
  EXPECT_EQ(shardIndices(10, 0, 3, 1, 0, false), (std::vector<int64_t>{0, 3, 6}));
  EXPECT_EQ(shardIndices(10, 1, 3, 1, 0, false), (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(shardIndices(10, 2, 3, 1, 5, false), (std::vector<int64_t>{2, 5, 8}));
}

TEST(Shard, ShuffleIsDeterministicAndChangesWithEpochAndSeed) {
  const auto a = shardIndices(1000, 1, 4, 42, 3, true);
  EXPECT_EQ(a, shardIndices(1000, 1, 4, 42, 3, true));
  EXPECT_NE(a, shardIndices(1000, 1, 4, 42, 4, true));
  EXPECT_NE(a, shardIndices(1000, 1, 4, 43, 3, true));
  std::vector<int64_t> sorted = shardIndices(1000, 0, 1, 42, 3, true);
  EXPECT_NE(sorted, shardIndices(1000, 0, 1, 42, 3, false));
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, shardIndices(1000, 0, 1, 42, 3, false));  // a permutation
}

// Resuming from a checkpoint on another machine or standard library must replay the same order,
// so the permutation is pinned.
TEST(Shard, ShuffleIsPinnedAcrossPlatforms) {
  EXPECT_EQ(shardIndices(10, 0, 1, 42, 0, true),
            (std::vector<int64_t>{3, 6, 4, 0, 8, 5, 1, 2, 9, 7}));
}

TEST(Shard, InvalidArgumentsAreErrors) {
  EXPECT_THROW(shardIndices(-1, 0, 1, 0, 0, true), Error);
  EXPECT_THROW(shardIndices(10, 0, 0, 0, 0, true), Error);
  EXPECT_THROW(shardIndices(10, 2, 2, 0, 0, true), Error);
  EXPECT_THROW(shardIndices(10, -1, 2, 0, 0, false), Error);
  EXPECT_THROW(evalShard(-1, 0, 1), Error);
  EXPECT_THROW(evalShard(10, 0, 0), Error);
  EXPECT_THROW(evalShard(10, 3, 3), Error);
}

TEST(Synthetic, IsDeterministicInCountAndSeed) {
  const ImageSet a = makeSynthetic(200, 5);
  const ImageSet b = makeSynthetic(200, 5);
  EXPECT_EQ(a.count, 200);
  EXPECT_EQ(a.rows, 28);
  EXPECT_EQ(a.cols, 28);
  EXPECT_EQ(a.classes, 10);
  ASSERT_EQ(a.pixels.size(), 200u * 28 * 28);
  ASSERT_EQ(a.labels.size(), 200u);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.labels, b.labels);
  const ImageSet c = makeSynthetic(200, 6);
  EXPECT_NE(a.labels, c.labels);
  EXPECT_NE(a.pixels, c.pixels);
  std::set<uint8_t> classes(a.labels.begin(), a.labels.end());
  EXPECT_EQ(classes.size(), 10u);
  EXPECT_LT(*classes.rbegin(), 10);
  const ImageSet small = makeSynthetic(7, 1, 5, 3, 4);
  EXPECT_EQ(small.pixels.size(), 7u * 5 * 3);
  for (uint8_t l : small.labels) EXPECT_LT(l, 4);
  EXPECT_EQ(makeSynthetic(0, 1).pixels.size(), 0u);
}

// Pinned so that a config's synthetic data is the same on every platform.
TEST(Synthetic, IsPinnedAcrossPlatforms) {
  const ImageSet s = makeSynthetic(3, 9, 2, 2, 10);
  EXPECT_EQ(s.labels, (std::vector<uint8_t>{7, 7, 4}));
  EXPECT_EQ(s.pixels,
            (std::vector<uint8_t>{101, 27, 239, 167, 35, 43, 185, 189, 222, 156, 147, 112}));
}

TEST(Synthetic, TrainClassMeansClassifyTheTestSplit) {
  // Different seeds, as a config's train and test splits use: the classes must be the same.
  const ImageSet train = makeSynthetic(2000, 1);
  const ImageSet test = makeSynthetic(1000, 2);
  const int64_t dim = train.rows * train.cols;
  std::vector<double> means(size_t(10 * dim), 0.0);
  std::array<int64_t, 10> counts{};
  for (int64_t i = 0; i < train.count; ++i) {
    const int c = train.labels[i];
    ++counts[c];
    for (int64_t j = 0; j < dim; ++j) means[c * dim + j] += train.pixels[i * dim + j];
  }
  for (int c = 0; c < 10; ++c) {
    ASSERT_GT(counts[c], 0);
    for (int64_t j = 0; j < dim; ++j) means[c * dim + j] /= double(counts[c]);
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < test.count; ++i) {
    int best = -1;
    double bestDist = 0;
    for (int c = 0; c < 10; ++c) {
      double d = 0;
      for (int64_t j = 0; j < dim; ++j) {
        const double diff = test.pixels[i * dim + j] - means[c * dim + j];
        d += diff * diff;
      }
      if (best < 0 || d < bestDist) best = c, bestDist = d;
    }
    correct += best == test.labels[i];
  }
  EXPECT_GT(double(correct) / double(test.count), 0.9);
}

// Note [Text data]: the files of a folder, joined in name order; links and *.dat skipped.
class TextDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write("b", "0123456789");
    write("a", "abcdefghij");
    write("a.dat", "INDEX");
    fs::create_symlink(dir_.path() + "/a", dir_.path() + "/a.u8");
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.path() + "/" + name, std::ios::binary) << text;
  }
  std::string window(const ImageSet& s, int64_t i) {
    return std::string(s.pixels.begin() + i * s.cols, s.pixels.begin() + (i + 1) * s.cols);
  }
  test::TempDir dir_;
};

TEST_F(TextDataTest, WindowsOfContextPlusOneStartEveryContextBytes) {
  // 20 bytes "abcdefghij0123456789": train is the first 18, test the last 2.
  const ImageSet train = loadText(dir_.path(), "train", 4);
  EXPECT_TRUE(train.tokens);
  EXPECT_EQ(train.classes, 256);
  EXPECT_EQ(train.cols, 5);
  ASSERT_EQ(train.count, 4);  // (18 - 1) / 4
  EXPECT_EQ(window(train, 0), "abcde");
  EXPECT_EQ(window(train, 1), "efghi");
  EXPECT_EQ(window(train, 3), "23456");
  const ImageSet test = loadText(dir_.path(), "test", 1);
  ASSERT_EQ(test.count, 1);
  EXPECT_EQ(window(test, 0), "89");
}

TEST_F(TextDataTest, ATooShortSplitAMissingOrEmptyFolderAreNamed) {
  EXPECT_THAT(test::errorOf([&] { loadText(dir_.path(), "test", 4); }),
              AllOf(HasSubstr(dir_.path()), HasSubstr("test split has 2 bytes")));
  EXPECT_THAT(test::errorOf([&] { loadText(dir_.path() + "/none", "train", 4); }),
              AllOf(HasSubstr("no such folder"), HasSubstr("fortunes")));
  test::TempDir empty;
  EXPECT_THAT(test::errorOf([&] { loadText(empty.path(), "train", 4); }),
              HasSubstr("no text files"));
  EXPECT_THAT(test::errorOf([&] { loadText(dir_.path(), "valid", 4); }),
              HasSubstr("unknown text split"));
}

}  // namespace
}  // namespace cdl::core
