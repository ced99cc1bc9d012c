// cuda::ransDecode (kernels/cuda/rans.h): the stream's header and tables are copied to the host
// and checked there with the CPU decoder's rules and words; the blocks decode on the device.
#include <algorithm>
#include <vector>

#include "kernels/base/bytes.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/cuda/bitpack.h"
#include "kernels/cuda/rans.h"
#include "kernels/cuda/rans_blocks.h"
#include "kernels/cuda/scratch.h"
#include "kernels/rans_table.h"

namespace cdl::kernels::cuda {
namespace {

using kernels::detail::kModeConstant;
using kernels::detail::kModePacked;
constexpr size_t kHeaderBytes = kernels::detail::kStreamHeaderBytes;

void decodePacked(const uint8_t* in_dev, size_t len, int64_t n, uint8_t* sym_dev, int maxAlphabet,
                  int width, cudaStream_t stream) {
  kernels::detail::checkPacked(width, len, n, readBack(in_dev + len - 1, stream));
  DeviceScratch firstBad(sizeof(int64_t), stream);
  unpackBits(in_dev + kHeaderBytes, n, width, sym_dev, maxAlphabet, firstBad.as<int64_t>(), stream);
  const int64_t bad = readBack(firstBad.as<int64_t>(), stream);
  CDL_CHECK(bad < 0, "packed stream: symbol ", int(readBack(sym_dev + bad, stream)), " at index ",
            bad, " is not below ", maxAlphabet);
}

// A rans stream's tables, checked against n as kernels/rans.cc checks them.
struct RansLayout {
  detail::RansDecodeArgs args;
  uint64_t blocks = 0;
  size_t dataStart = 0;
  std::vector<uint64_t> offsets;  // blocks + 1, relative to dataStart
};

void parseFrequencies(const uint8_t* head, size_t len, int maxAlphabet, RansLayout* r) {
  const kernels::detail::RansHeader h = kernels::detail::parseRansHeader(head, len, maxAlphabet);
  detail::RansDecodeArgs& a = r->args;
  a.probBits = h.probBits;
  a.logBlock = h.logBlock;
  a.alphabet = h.alphabet;
  uint32_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    a.freq[s] = h.freq[s];
    a.cum[s] = static_cast<uint16_t>(std::min<uint32_t>(sum, 0xffffu));
    sum += a.freq[s];
  }
}

RansLayout parseRans(const uint8_t* in_dev, const uint8_t* head, size_t len, int64_t n,
                     int maxAlphabet, cudaStream_t stream) {
  RansLayout r;
  parseFrequencies(head, len, maxAlphabet, &r);
  const size_t tableEnd = kHeaderBytes + 2 * size_t(r.args.alphabet);
  r.blocks = ((static_cast<uint64_t>(n) - 1) >> r.args.logBlock) + 1;
  const size_t after = kernels::detail::checkBlockTableRoom(len, tableEnd, r.blocks, n);
  std::vector<uint8_t> table(4 * r.blocks);
  copyToHost(table.data(), in_dev + tableEnd, table.size(), stream);
  r.offsets.resize(r.blocks + 1);
  kernels::detail::checkBlockTable(table.data(), r.blocks, after, r.offsets.data());
  r.dataStart = tableEnd + table.size();
  return r;
}

void throwBlockError(uint64_t status) {
  const uint64_t block = status >> detail::kStatusShift;
  switch (status & ((1u << detail::kStatusShift) - 1)) {
    case detail::kBadInitialState:
      CDL_THROW("rans block ", block, ": an initial state is outside [2^15, 2^31)");
    case detail::kWordsRunOut:
      CDL_THROW("rans block ", block, ": words run out before its last step");
    case detail::kWordsLeftOver:
      CDL_THROW("rans block ", block, ": words left over after its last step");
    default:
      CDL_THROW("rans block ", block, ": a final state is not 2^15");
  }
}

void decodeRans(const uint8_t* in_dev, const uint8_t* head, size_t len, int64_t n, uint8_t* sym_dev,
                int maxAlphabet, cudaStream_t stream) {
  const RansLayout r = parseRans(in_dev, head, len, n, maxAlphabet, stream);
  DeviceScratch offsets(8 * r.offsets.size(), stream);
  DeviceScratch status(sizeof(uint64_t), stream);
  CDL_CUDA_CHECK(cudaMemsetAsync(status.as<uint64_t>(), 0xff, sizeof(uint64_t), stream));
  copyToDevice(offsets.as<uint64_t>(), r.offsets.data(), 8 * r.offsets.size(), stream);
  detail::decodeBlocks(in_dev + r.dataStart, offsets.as<uint64_t>(), n, r.args, sym_dev,
                       status.as<uint64_t>(), stream);
  const uint64_t failed = readBack(status.as<uint64_t>(), stream);
  if (failed != ~uint64_t{0}) throwBlockError(failed);
}

}  // namespace

void ransDecode(const uint8_t* in_dev, size_t len, int64_t n, uint8_t* sym_dev, int maxAlphabet,
                cudaStream_t stream) {
  CDL_CHECK(n >= 0, "rans: element count ", n, " is negative");
  CDL_CHECK(maxAlphabet >= 1 && maxAlphabet <= 256, "rans: maxAlphabet = ", maxAlphabet,
            ", must be in 1..256");
  CDL_CHECK((in_dev != nullptr || len == 0) && (sym_dev != nullptr || n == 0),
            "rans: null buffer for ", n, " symbols");
  // The header and the largest frequency table, or the whole stream when shorter.
  uint8_t head[kHeaderBytes + 2 * 256];
  copyToHost(head, in_dev, std::min(len, sizeof(head)), stream);
  switch (kernels::detail::checkStreamHeader(head, len, maxAlphabet)) {
    case kModeConstant:
      if (n > 0) CDL_CUDA_CHECK(cudaMemsetAsync(sym_dev, head[1], static_cast<size_t>(n), stream));
      CDL_CUDA_CHECK(cudaStreamSynchronize(stream));
      return;
    case kModePacked:
      return decodePacked(in_dev, len, n, sym_dev, maxAlphabet, head[1], stream);
    default:
      if (n == 0) {
        // No blocks: only the frequency table to check, as the CPU does.
        RansLayout r;
        parseFrequencies(head, len, maxAlphabet, &r);
        CDL_CHECK(len == kHeaderBytes + 2 * size_t(r.args.alphabet), "rans stream: blocks take 0",
                  " bytes but ", len - kHeaderBytes - 2 * size_t(r.args.alphabet),
                  " follow the block table");
        return;
      }
      return decodeRans(in_dev, head, len, n, sym_dev, maxAlphabet, stream);
  }
}

}  // namespace cdl::kernels::cuda
