#include "kernels/cuda/rans.h"

#include <algorithm>
#include <vector>

#include "kernels/base/bytes.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/cuda/bitpack.h"
#include "kernels/cuda/histogram.h"
#include "kernels/cuda/rans_blocks.h"
#include "kernels/cuda/scratch.h"
#include "kernels/rans_table.h"

namespace cdl::kernels::cuda {
namespace {

using kernels::detail::blockCount;
using kernels::detail::kModeConstant;
using kernels::detail::kModePacked;
using kernels::detail::kModeRans;
constexpr size_t kHeaderBytes = kernels::detail::kStreamHeaderBytes;

size_t writeHeader(uint8_t* out_dev, kernels::detail::RansMode mode, int arg, cudaStream_t stream) {
  uint8_t h[kHeaderBytes];
  kernels::detail::writeStreamHeader(h, mode, arg, 0, 0);
  copyToDevice(out_dev, h, kHeaderBytes, stream);
  return kHeaderBytes;
}

detail::RansEncodeArgs encodeArgs(const uint16_t* freq, int alphabet, int probBits, int logBlock) {
  kernels::detail::RansEncodeTable t;
  kernels::detail::buildEncodeTable(freq, alphabet, probBits, &t);
  detail::RansEncodeArgs a;
  for (int s = 0; s < 256; ++s) {
    a.xmax[s] = t.sym[s].xmax;
    a.rcp[s] = t.sym[s].rcp;
    a.biasCmpl[s] = t.biasCmpl[s];
    a.shift[s] = static_cast<uint8_t>(t.sym[s].shift);
  }
  a.logBlock = logBlock;
  return a;
}

// Codes every block on the device and, when the whole rans stream takes at most `limit` bytes,
// writes it to out_dev and returns its size; else returns 0 and writes nothing (as the CPU's
// encodeRans, whose blocks fit one after another exactly when their sum does).
size_t encodeRans(const uint8_t* sym_dev, int64_t n, const uint16_t* freq, int alphabet,
                  int probBits, int logBlock, uint8_t* out_dev, size_t limit, cudaStream_t stream) {
  const uint64_t blocks = blockCount(n, logBlock);
  const uint64_t tableEnd = kHeaderBytes + 2 * uint64_t(alphabet) + 4 * blocks;
  if (tableEnd > limit) return 0;
  DeviceScratch words(2 * static_cast<size_t>(n), stream);
  DeviceScratch states(4 * kRansLanes * blocks, stream);
  DeviceScratch sizes(4 * blocks, stream);
  DeviceScratch offsets(8 * (blocks + 1), stream);
  detail::encodeBlocks(sym_dev, n, encodeArgs(freq, alphabet, probBits, logBlock),
                       words.as<uint16_t>(), states.as<uint32_t>(), sizes.as<uint32_t>(), stream);
  detail::blockOffsets(sizes.as<uint32_t>(), static_cast<int64_t>(blocks), offsets.as<uint64_t>(),
                       stream);
  const uint64_t total = tableEnd + readBack(offsets.as<uint64_t>() + blocks, stream);
  if (total > limit) return 0;

  std::vector<uint8_t> head(kHeaderBytes + 2 * size_t(alphabet));
  kernels::detail::writeStreamHeader(head.data(), kModeRans, probBits, logBlock, alphabet - 1);
  for (int s = 0; s < alphabet; ++s) storeLE<uint16_t>(head.data() + kHeaderBytes + 2 * s, freq[s]);
  copyToDevice(out_dev, head.data(), head.size(), stream);
  detail::writeBlocks(words.as<uint16_t>(), states.as<uint32_t>(), sizes.as<uint32_t>(),
                      offsets.as<uint64_t>(), n, logBlock, out_dev + head.size(),
                      out_dev + tableEnd, stream);
  return static_cast<size_t>(total);
}

}  // namespace

size_t ransEncode(const uint8_t* sym_dev, int64_t n, uint8_t* out_dev, size_t capacity,
                  const RansOptions& opt, cudaStream_t stream) {
  const size_t bound = ransMaxEncodedBytes(n, opt);
  CDL_CHECK(out_dev != nullptr && (sym_dev != nullptr || n == 0),
            "cuda::ransEncode: null buffer for ", n, " symbols");
  CDL_CHECK(capacity >= bound, "cuda::ransEncode: output capacity ", capacity, " is below the ",
            bound, " bytes that ransMaxEncodedBytes gives for ", n, " symbols");
  if (n == 0) return writeHeader(out_dev, kModeConstant, 0, stream);

  uint64_t hist[256];
  {
    DeviceScratch counts(sizeof(hist), stream);
    histogram(sym_dev, n, counts.as<uint64_t>(), stream);
    copyToHost(hist, counts.as<uint64_t>(), sizeof(hist), stream);
  }
  // The CPU's own decisions (kernels/rans.cc, ransEncode) on the same counts.
  const kernels::detail::RansPlan p = kernels::detail::planRans(hist, n, opt);
  if (p.mode == kModeConstant) return writeHeader(out_dev, kModeConstant, p.symbol, stream);
  size_t bytes = 0;
  if (p.mode == kModeRans) {
    bytes = encodeRans(sym_dev, n, p.freq, p.alphabet, p.probBits, opt.logBlock, out_dev,
                       p.packedBytes - 1, stream);
  }
  if (bytes == 0) {
    writeHeader(out_dev, kModePacked, p.width, stream);
    packBits(sym_dev, n, p.width, out_dev + kHeaderBytes, stream);
    bytes = p.packedBytes;
  }
  CDL_CUDA_CHECK(cudaStreamSynchronize(stream));
  return bytes;
}

}  // namespace cdl::kernels::cuda
