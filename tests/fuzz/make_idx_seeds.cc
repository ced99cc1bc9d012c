// Writes valid IDX image/label pairs (plain and gzip) in idx_fuzz's input layout into a folder,
// as its seed corpus.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

void be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

std::vector<uint8_t> gzipped(const std::vector<uint8_t>& plain, const std::string& tmp) {
  gzFile gz = gzopen(tmp.c_str(), "wb");
  gzwrite(gz, plain.data(), static_cast<unsigned>(plain.size()));
  gzclose(gz);
  std::ifstream in(tmp, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  std::remove(tmp.c_str());
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_idx_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  int n = 0;
  for (uint32_t count : {0u, 1u, 3u}) {
    for (uint32_t side : {1u, 4u, 9u}) {
      std::vector<uint8_t> images, labels;
      be32(images, 0x803);
      be32(images, count);
      be32(images, side);
      be32(images, side);
      for (uint32_t i = 0; i < count * side * side; ++i)
        images.push_back(static_cast<uint8_t>(i * 37));
      be32(labels, 0x801);
      be32(labels, count);
      for (uint32_t i = 0; i < count; ++i) labels.push_back(static_cast<uint8_t>(i % 10));
      for (bool gz : {false, true}) {
        const std::vector<uint8_t> im = gz ? gzipped(images, dir + "/tmp.gz") : images;
        const std::vector<uint8_t> lb = gz ? gzipped(labels, dir + "/tmp.gz") : labels;
        std::ofstream out(dir + "/idx" + std::to_string(n++), std::ios::binary);
        const uint8_t len[2] = {static_cast<uint8_t>(im.size()),
                                static_cast<uint8_t>(im.size() >> 8)};
        out.write(reinterpret_cast<const char*>(len), 2);
        out.write(reinterpret_cast<const char*>(im.data()),
                  static_cast<std::streamsize>(im.size()));
        out.write(reinterpret_cast<const char*>(lb.data()),
                  static_cast<std::streamsize>(lb.size()));
      }
    }
  }
  return 0;
}
