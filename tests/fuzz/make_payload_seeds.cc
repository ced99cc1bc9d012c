// Writes valid payloads of every codec and a range of rates and sizes into a folder, as the seed
// corpus of payload_fuzz.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/codec/spec.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_payload_seeds DIR\n");
    return 2;
  }
  const std::vector<std::string> specs = {"none",
                                          "fp16",
                                          "bf16",
                                          "qsgd:bits=1,entropy=none",
                                          "qsgd:bits=2,bucket=16,entropy=rans",
                                          "qsgd:bits=4,rounding=nearest",
                                          "qsgd:bits=8,bucket=100",
                                          "topk:density=0.1",
                                          "topk:density=0.5,entropy=none"};
  std::mt19937 rng(1);
  int count = 0;
  for (const auto& spec : specs) {
    const auto s = cdl::comm::parseCodecSpec(spec);
    for (int64_t n : {0, 1, 5, 64, 700, 3000}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = std::normal_distribution<float>(0.0f, 0.1f)(rng);
      if (n > 10) x[3] = 0.0f;
      const auto p = cdl::comm::makeCodec(s.codec)->encode(x.data(), n, s.rate);
      std::ofstream(std::string(argv[1]) + "/seed" + std::to_string(count++), std::ios::binary)
          .write(reinterpret_cast<const char*>(p.data()), static_cast<std::streamsize>(p.size()));
    }
  }
  return 0;
}
