// Writes valid coded model files of a few sizes into a folder, as the seed corpus of
// model_file_fuzz.
#include <cstdio>
#include <fstream>
#include <string>

#include "core/model_file/model_file.h"
#include "tests/support/model_files.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_model_seeds DIR\n");
    return 2;
  }
  int count = 0;
  for (int64_t rows : {0, 1, 6, 24, 96}) {
    for (int64_t cols : {1, 10, 33}) {
      cdl::core::ModelFile f = cdl::test::sampleModelFile(rows, cols);
      const auto bytes = cdl::core::encodeModelFile(f);
      std::ofstream(std::string(argv[1]) + "/model" + std::to_string(count++), std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
  }
  return 0;
}
