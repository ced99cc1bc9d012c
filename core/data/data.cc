#include "core/data/data.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <utility>

#include "kernels/base/bytes.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::core {
namespace {

// Reads grow the buffer by at most this much at a time, so a header that claims a huge body does
// not allocate it before the bytes are there.
constexpr size_t kReadChunk = size_t{64} << 20;
constexpr int64_t kMaxSide = 4096;
constexpr int64_t kMaxCount = int64_t{1} << 31;
// The most data bytes an IDX file may claim (a hundred times Fashion-MNIST's train images), so
// that a small gzip file cannot make the reader inflate without bound.
constexpr int64_t kMaxBody = int64_t{4} << 30;

// A file's bytes, decompressed when the file starts with the gzip magic (0x1f 0x8b).
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    CDL_CHECK(f != nullptr, "cannot open ", path, ": ", std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    const size_t got = std::fread(magic, 1, 2, f);
    const bool gzip = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (!gzip) {
      std::rewind(f);
      plain_ = f;
      struct stat st {};
      if (::fstat(::fileno(f), &st) == 0 && S_ISREG(st.st_mode)) plainBytes_ = st.st_size;
      return;
    }
    std::fclose(f);
    gz_ = gzopen(path.c_str(), "rb");
    CDL_CHECK(gz_ != nullptr, "cannot open ", path, " as gzip: ", std::strerror(errno));
    gzbuffer(gz_, 1 << 20);
  }
  ~ByteSource() {
    if (plain_ != nullptr) std::fclose(plain_);
    if (gz_ != nullptr) gzclose(gz_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // The size of a plain regular file; -1 for a gzip stream (its size is known only at its end).
  int64_t plainBytes() const { return plainBytes_; }

  // Reads up to n bytes; fewer only at the end of the (decompressed) stream. A read or gzip error,
  // including a gzip stream cut short, throws.
  size_t read(uint8_t* dst, size_t n) {
    size_t total = 0;
    while (total < n) {
      const size_t want = std::min<size_t>(n - total, size_t{1} << 30);
      size_t got = 0;
      if (plain_ != nullptr) {
        got = std::fread(dst + total, 1, want, plain_);
        CDL_CHECK(!std::ferror(plain_), path_, ": read error: ", std::strerror(errno));
      } else {
        const int r = gzread(gz_, dst + total, static_cast<unsigned>(want));
        // gzread reports a truncated stream (Z_BUF_ERROR) as a short read, not as -1.
        int errnum = Z_OK;
        std::string msg = gzerror(gz_, &errnum);
        if (r < 0 || errnum != Z_OK) {
          // zlib prefixes its message with the path, which ours names already.
          if (msg.rfind(path_ + ": ", 0) == 0) msg.erase(0, path_.size() + 2);
          CDL_THROW(path_, ": gzip stream error: ", msg, " (the file is truncated or corrupt)");
        }
        got = static_cast<size_t>(r);
      }
      total += got;
      if (got < want) break;
    }
    return total;
  }

 private:
  std::string path_;
  std::FILE* plain_ = nullptr;
  gzFile gz_ = nullptr;
  int64_t plainBytes_ = -1;
};

struct IdxFile {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Reads a uint8 IDX file with `rank` dimensions: the magic, the big-endian dimensions, then exactly
// their product in bytes.
IdxFile readIdxFile(const std::string& path, uint32_t rank, const char* what) {
  ByteSource src(path);
  const uint32_t magic = 0x00000800u | rank;
  const size_t headerBytes = 4 + 4 * size_t{rank};
  uint8_t header[16];
  // The magic first, so that a short file of the wrong kind is reported as the wrong kind.
  size_t got = src.read(header, 4);
  if (got == 4) {
    const uint32_t found = loadBigEndian32(header);
    CDL_CHECK(found == magic, path, ": not an IDX ", what, " file: magic 0x", std::hex, found,
              ", expected 0x", magic, std::dec, " (uint8, ", rank, " dimensions)");
    got += src.read(header + 4, headerBytes - 4);
  }
  CDL_CHECK(got == headerBytes, path, ": truncated IDX header: expected ", headerBytes,
            " bytes, got ", got);

  IdxFile idx;
  int64_t bodyBytes = 1;
  for (uint32_t i = 0; i < rank; ++i) {
    const int64_t d = loadBigEndian32(header + 4 + 4 * i);
    const int64_t limit = i == 0 ? kMaxCount : kMaxSide;
    CDL_CHECK(d >= 1 && d <= limit, path, ": dimension ", i, " is ", d, ", expected 1..", limit);
    idx.dims.push_back(d);
    bodyBytes *= d;
  }

  CDL_CHECK(bodyBytes <= kMaxBody, path, ": the header claims ", bodyBytes,
            " bytes of data, more than the reader takes (", kMaxBody, ")");
  const int64_t fileBytes = src.plainBytes();
  CDL_CHECK(fileBytes < 0 || fileBytes >= static_cast<int64_t>(headerBytes) + bodyBytes, path,
            ": truncated: expected ", static_cast<int64_t>(headerBytes) + bodyBytes,
            " bytes (decompressed), got ", fileBytes);
  const size_t expected = static_cast<size_t>(bodyBytes);
  size_t have = 0;
  while (have < expected) {
    const size_t want = std::min(expected - have, kReadChunk);
    idx.data.resize(have + want);
    const size_t n = src.read(idx.data.data() + have, want);
    have += n;
    if (n < want) break;
  }
  CDL_CHECK(have == expected, path, ": truncated: expected ", headerBytes + expected,
            " bytes (decompressed), got ", headerBytes + have);

  size_t trailing = 0;
  uint8_t scratch[1 << 14];
  for (size_t n; (n = src.read(scratch, sizeof scratch)) > 0;) trailing += n;
  CDL_CHECK(trailing == 0, path, ": ", trailing, " trailing bytes after the expected ",
            headerBytes + expected, " (decompressed)");
  return idx;
}

// The dataset file name in dir, preferring the gzip-compressed one.
std::string findFashionFile(const std::string& dir, const std::string& name) {
  const std::filesystem::path base = std::filesystem::path(dir) / name;
  const std::string gz = base.string() + ".gz";
  std::error_code ec;
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  if (std::filesystem::is_regular_file(base, ec)) return base.string();
  CDL_THROW("Fashion-MNIST file not found: tried ", gz, " and ", base.string(),
            "; Debian's dataset-fashion-mnist package installs it in "
            "/usr/share/datasets/fashion-mnist (or set data.path to the directory holding it)");
}

// A uniform integer in [0, range) from raw engine output, without modulo bias. The standard
// distributions are not used because their algorithms differ between standard libraries, and the
// shuffle and synthetic data must be identical on every platform.
uint64_t bounded(std::mt19937_64& rng, uint64_t range) {
  const uint64_t threshold = (0 - range) % range;  // 2^64 mod range
  uint64_t x;
  do {
    x = rng();
  } while (x < threshold);
  return x % range;
}

// The stream for the synthetic prototypes: fixed, so splits drawn with different seeds (and
// counts) share them.
constexpr uint64_t kPrototypeSeed = 0x5eed'c0de'd47a'0001ULL;

void checkShardArgs(int64_t n, int rank, int size) {
  CDL_CHECK(n >= 0, "sharding needs n >= 0, got ", n);
  CDL_CHECK(size >= 1, "sharding needs size >= 1, got ", size);
  CDL_CHECK(rank >= 0 && rank < size, "sharding needs 0 <= rank < size, got rank ", rank,
            " of size ", size);
}

}  // namespace

ImageSet readIdx(const std::string& imagesPath, const std::string& labelsPath, int classes) {
  CDL_CHECK(classes >= 1 && classes <= 256, "readIdx: classes must be 1..256 (uint8 labels), got ",
            classes);
  IdxFile images = readIdxFile(imagesPath, 3, "image");
  IdxFile labels = readIdxFile(labelsPath, 1, "label");
  CDL_CHECK(images.dims[0] == labels.dims[0], "count mismatch: ", imagesPath, " has ",
            images.dims[0], " images but ", labelsPath, " has ", labels.dims[0], " labels");
  const auto bad = std::find_if(labels.data.begin(), labels.data.end(),
                                [classes](uint8_t l) { return l >= classes; });
  CDL_CHECK(bad == labels.data.end(), labelsPath, ": label ", int{*bad}, " at index ",
            bad - labels.data.begin(), " is not below the class count ", classes);

  ImageSet set;
  set.count = images.dims[0];
  set.rows = images.dims[1];
  set.cols = images.dims[2];
  set.classes = classes;
  set.pixels = std::move(images.data);
  set.labels = std::move(labels.data);
  return set;
}

ImageSet loadFashionMnist(const std::string& dir, const std::string& split) {
  CDL_CHECK(split == "train" || split == "test", "unknown Fashion-MNIST split '", split,
            "' (expected train or test)");
  const std::string prefix = split == "train" ? "train" : "t10k";
  // Images first, so that an empty directory is reported by its first file.
  const std::string images = findFashionFile(dir, prefix + "-images-idx3-ubyte");
  const std::string labels = findFashionFile(dir, prefix + "-labels-idx1-ubyte");
  return readIdx(images, labels, 10);
}

ImageSet loadText(const std::string& dir, const std::string& split, int64_t context) {
  CDL_CHECK(split == "train" || split == "test", "unknown text split '", split,
            "' (expected train or test)");
  CDL_CHECK(context >= 1 && context <= 65536, "text: context must be 1..65536 tokens, got ",
            context);
  namespace fs = std::filesystem;
  std::error_code ec;
  CDL_CHECK(fs::is_directory(dir, ec), "text corpus ", dir,
            ": no such folder (Debian's fortunes package provides /usr/share/games/fortunes)");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_symlink(ec) || !e.is_regular_file(ec) || e.path().extension() == ".dat") continue;
    files.push_back(e.path().string());
  }
  CDL_CHECK(!ec, "text corpus ", dir, ": cannot list the folder: ", ec.message());
  std::sort(files.begin(), files.end());
  constexpr int64_t kMaxCorpus = int64_t{256} << 20;
  std::vector<uint8_t> bytes;
  for (const std::string& f : files) {
    const std::string text = readWholeFile(f, "text file");
    CDL_CHECK(static_cast<int64_t>(bytes.size() + text.size()) <= kMaxCorpus, "text corpus ", dir,
              ": more than ", kMaxCorpus >> 20, " MiB of text");
    bytes.insert(bytes.end(), text.begin(), text.end());
  }
  CDL_CHECK(!bytes.empty(), "text corpus ", dir, ": no text files in it");
  const size_t cut = bytes.size() / 10 * 9;
  const size_t begin = split == "train" ? 0 : cut, end = split == "train" ? cut : bytes.size();
  const int64_t length = static_cast<int64_t>(end - begin);
  CDL_CHECK(length >= context + 1, "text corpus ", dir, ": its ", split, " split has ", length,
            " bytes, fewer than one window of context + 1 = ", context + 1);
  ImageSet set;
  set.tokens = true;
  set.rows = 1;
  set.cols = context + 1;
  set.classes = 256;
  set.count = (length - 1) / context;
  set.pixels.resize(static_cast<size_t>(set.count * set.cols));
  for (int64_t i = 0; i < set.count; ++i) {
    std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(begin + i * context), set.cols,
                set.pixels.begin() + i * set.cols);
  }
  return set;
}

ImageSet makeSynthetic(int64_t count, uint64_t seed, int64_t rows, int64_t cols, int classes) {
  CDL_CHECK(count >= 0 && count <= kMaxCount, "makeSynthetic: count must be 0..", kMaxCount,
            ", got ", count);
  CDL_CHECK(rows >= 1 && rows <= kMaxSide && cols >= 1 && cols <= kMaxSide,
            "makeSynthetic: rows and cols must be 1..", kMaxSide, ", got ", rows, "x", cols);
  CDL_CHECK(classes >= 1 && classes <= 256, "makeSynthetic: classes must be 1..256, got ", classes);
  const int64_t pixelsPer = rows * cols;

  // Prototype pixels are uniform over 0..255: two prototypes differ by about 104 per pixel (RMS),
  // far more than the noise below, so the classes are linearly separable in practice.
  std::vector<uint8_t> prototypes(static_cast<size_t>(classes * pixelsPer));
  std::mt19937_64 protoRng(kPrototypeSeed);
  for (auto& p : prototypes) p = static_cast<uint8_t>(protoRng() >> 56);

  ImageSet set;
  set.count = count;
  set.rows = rows;
  set.cols = cols;
  set.classes = classes;
  set.pixels.resize(static_cast<size_t>(count * pixelsPer));
  set.labels.resize(static_cast<size_t>(count));
  std::mt19937_64 rng(kernels::mix64(seed ^ 0x9e3779b97f4a7c15ULL));
  for (int64_t i = 0; i < count; ++i) {
    const auto label = static_cast<int>(bounded(rng, static_cast<uint64_t>(classes)));
    set.labels[i] = static_cast<uint8_t>(label);
    const uint8_t* proto = prototypes.data() + label * pixelsPer;
    uint8_t* out = set.pixels.data() + i * pixelsPer;
    for (int64_t j = 0; j < pixelsPer; ++j) {
      // Triangular noise in -96..96 (standard deviation about 39): two bytes of one draw, each
      // scaled to 0..96 by multiply-shift.
      const uint64_t r = rng();
      const int noise = static_cast<int>(((r >> 56) * 97) >> 8) +
                        static_cast<int>((((r >> 48) & 0xff) * 97) >> 8) - 96;
      out[j] = static_cast<uint8_t>(std::clamp(int{proto[j]} + noise, 0, 255));
    }
  }
  return set;
}

std::vector<int64_t> shardIndices(int64_t n, int rank, int size, uint64_t seed, int64_t epoch,
                                  bool shuffle) {
  checkShardArgs(n, rank, size);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (shuffle) {
    // Fisher-Yates from raw engine output: the same permutation on every rank and platform.
    std::mt19937_64 rng(kernels::mix64(kernels::mix64(seed) ^ static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(bounded(rng, static_cast<uint64_t>(i) + 1));
      std::swap(order[i], order[j]);
    }
  }
  const int64_t perRank = n / size;
  std::vector<int64_t> shard(static_cast<size_t>(perRank));
  for (int64_t k = 0; k < perRank; ++k) shard[k] = order[rank + k * size];
  return shard;
}

std::vector<int64_t> evalShard(int64_t n, int rank, int size) {
  checkShardArgs(n, rank, size);
  std::vector<int64_t> shard;
  shard.reserve(static_cast<size_t>(n / size + 1));
  for (int64_t i = rank; i < n; i += size) shard.push_back(i);
  return shard;
}

}  // namespace cdl::core
