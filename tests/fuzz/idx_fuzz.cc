// libFuzzer target: reading arbitrary bytes as an IDX image file and its label file (plain or
// gzip, as Fashion-MNIST ships) must either succeed or throw cdl::Error, never crash or allocate
// without bound. The first two bytes give the image file's length; the rest is the label file.
// Both go through real files (in a folder of this process), as readIdx reads them.
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/data/data.h"
#include "kernels/base/error.h"
#include "tests/fuzz/fuzz_files.h"

namespace {

const std::string& folder() {
  static const cdl::test::TempDir dir("cdl_idx_fuzz", cdl::test::memoryTempBase());
  return dir.path();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t imageBytes = std::min<size_t>(size - 2, data[0] | (size_t{data[1]} << 8));
  const std::string images = folder() + "/images", labels = folder() + "/labels";
  cdl::test::writeInput(images, data + 2, imageBytes);
  cdl::test::writeInput(labels, data + 2 + imageBytes, size - 2 - imageBytes);
  try {
    const cdl::core::ImageSet set = cdl::core::readIdx(images, labels, 10);
    if (set.pixels.size() != static_cast<size_t>(set.count * set.rows * set.cols) ||
        set.labels.size() != static_cast<size_t>(set.count)) {
      std::abort();
    }
    for (uint8_t l : set.labels) {
      if (l >= 10) std::abort();
    }
  } catch (const cdl::Error&) {
  }
  return 0;
}
