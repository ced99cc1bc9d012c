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

enum Mode : uint8_t { kPacked = 0, kRans = 1, kConstant = 2 };
constexpr size_t kHeaderBytes = 4;
constexpr int kMinLogBlock = 8;
constexpr int kMaxLogBlock = 30;
constexpr int kMaxProbBits = 15;

// The checks of the arguments and of the 4-byte header common to every mode; returns the mode.
int checkStream(const uint8_t* head, size_t len, int maxAlphabet) {
  const int mode = head[0];
  CDL_CHECK(mode == kPacked || mode == kRans || mode == kConstant, "rans stream: unknown mode ",
            mode);
  CDL_CHECK(mode == kRans || (head[2] == 0 && head[3] == 0), "rans stream: mode ", mode,
            " with nonzero logBlock or alphabet bytes");
  if (mode == kConstant) {
    CDL_CHECK(len == kHeaderBytes, "constant stream: ", len - kHeaderBytes,
              " bytes after the header, expected none");
    CDL_CHECK(head[1] < maxAlphabet, "constant stream: symbol ", int(head[1]), " is not below ",
              maxAlphabet);
  }
  return mode;
}

void decodePacked(const uint8_t* in_dev, size_t len, int64_t n, uint8_t* sym_dev, int maxAlphabet,
                  int width, cudaStream_t stream) {
  CDL_CHECK(width >= 1 && width <= 8, "packed stream: bit width ", width, ", must be in 1..8");
  const size_t bytes = packedBytes(n, width);
  CDL_CHECK(len - kHeaderBytes == bytes, "packed stream: ", len - kHeaderBytes,
            " bytes after the header, expected ", bytes, " for ", n, " symbols of ", width,
            " bits");
  const uint64_t usedBits = (static_cast<uint64_t>(n) * width) % 8;
  CDL_CHECK(usedBits == 0 || (readBack(in_dev + len - 1, stream) >> usedBits) == 0,
            "packed stream: padding bits of the last byte are not zero");
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
  detail::RansDecodeArgs& a = r->args;
  a.probBits = head[1];
  a.logBlock = head[2];
  a.alphabet = head[3] + 1;
  CDL_CHECK(a.probBits >= 1 && a.probBits <= kMaxProbBits, "rans stream: probBits = ", a.probBits,
            ", must be in 1..", kMaxProbBits);
  CDL_CHECK(a.logBlock >= kMinLogBlock && a.logBlock <= kMaxLogBlock,
            "rans stream: logBlock = ", a.logBlock, ", must be in ", kMinLogBlock, "..",
            kMaxLogBlock);
  CDL_CHECK(a.alphabet <= maxAlphabet, "rans stream: alphabet of ", a.alphabet,
            " symbols exceeds the expected ", maxAlphabet);
  CDL_CHECK(len - kHeaderBytes >= 2 * size_t(a.alphabet), "rans stream: ", len,
            " bytes cannot hold the frequency table of ", a.alphabet, " symbols");
  uint32_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    a.freq[s] = s < a.alphabet ? loadLE<uint16_t>(head + kHeaderBytes + 2 * s) : 0;
    a.cum[s] = static_cast<uint16_t>(std::min<uint32_t>(sum, 0xffffu));
    sum += a.freq[s];
  }
  CDL_CHECK(sum == (1u << a.probBits), "rans stream: frequencies sum to ", sum, ", not 2^",
            a.probBits);
}

RansLayout parseRans(const uint8_t* in_dev, const uint8_t* head, size_t len, int64_t n,
                     int maxAlphabet, cudaStream_t stream) {
  RansLayout r;
  parseFrequencies(head, len, maxAlphabet, &r);
  size_t pos = kHeaderBytes + 2 * size_t(r.args.alphabet);
  r.blocks = ((static_cast<uint64_t>(n) - 1) >> r.args.logBlock) + 1;
  CDL_CHECK((len - pos) / 4 >= r.blocks, "rans stream: ", len, " bytes cannot hold the table of ",
            r.blocks, " blocks that ", n, " symbols need");
  std::vector<uint8_t> table(4 * r.blocks);
  copyToHost(table.data(), in_dev + pos, table.size(), stream);
  pos += table.size();
  r.offsets.resize(r.blocks + 1);
  uint64_t total = 0;
  for (uint64_t b = 0; b < r.blocks; ++b) {
    const uint32_t bytes = loadLE<uint32_t>(table.data() + 4 * b);
    CDL_CHECK(bytes >= kernels::detail::kRansStateBytes && bytes % 2 == 0, "rans block ", b,
              ": size ", bytes, " is not 128 bytes of states plus whole 16-bit words");
    r.offsets[b] = total;
    total += bytes;
    CDL_CHECK(total <= len - pos, "rans stream: blocks 0..", b, " take ", total, " bytes but only ",
              len - pos, " follow the block table");
  }
  CDL_CHECK(total == len - pos, "rans stream: blocks take ", total, " bytes but ", len - pos,
            " follow the block table");
  r.offsets[r.blocks] = total;
  r.dataStart = pos;
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
  CDL_CHECK(len >= kHeaderBytes, "rans stream: ", len, " bytes, shorter than its ", kHeaderBytes,
            "-byte header");
  // The header and the largest frequency table, or the whole stream when shorter.
  uint8_t head[kHeaderBytes + 2 * 256];
  copyToHost(head, in_dev, std::min(len, sizeof(head)), stream);
  switch (checkStream(head, len, maxAlphabet)) {
    case kConstant:
      if (n > 0) CDL_CUDA_CHECK(cudaMemsetAsync(sym_dev, head[1], static_cast<size_t>(n), stream));
      CDL_CUDA_CHECK(cudaStreamSynchronize(stream));
      return;
    case kPacked:
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
