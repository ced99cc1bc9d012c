#pragma once

// Internals of the device rANS coder (kernels/cuda/rans.cu): the per-block kernels, one warp per
// block of the stream (Note [Interleaved rANS stream]), and the assembly of coded blocks.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace cdl::kernels::cuda::detail {

// The encoder constants of every symbol (kernels/rans_table.h, RansEncSymbol), passed by value as
// the kernel's argument (3.3 KB, below the 4 KB limit) and copied into shared memory there.
struct RansEncodeArgs {
  uint32_t xmax[256];
  uint32_t rcp[256];
  uint32_t biasCmpl[256];  // bias | cmpl << 16
  uint8_t shift[256];
  int logBlock;
};

// Encodes every block of sym_dev[0..n). Block b (symbols [b << logBlock, +m)) leaves its 32 final
// states at states_dev[32b ..], its words at words_dev[first + m - w .. first + m) (words_dev has
// n slots: a symbol gives up at most one word) and its coded size 128 + 2w at blockBytes_dev[b].
void encodeBlocks(const uint8_t* sym_dev, int64_t n, const RansEncodeArgs& args,
                  uint16_t* words_dev, uint32_t* states_dev, uint32_t* blockBytes_dev,
                  cudaStream_t stream);

// offsets_dev[b] = blockBytes_dev[0] + .. + blockBytes_dev[b - 1] for b in [0, blocks].
void blockOffsets(const uint32_t* blockBytes_dev, int64_t blocks, uint64_t* offsets_dev,
                  cudaStream_t stream);

// Writes the block table (u32 little-endian sizes) at table_dev and every block (states, then
// words) at data_dev + offsets_dev[b], at any alignment.
void writeBlocks(const uint16_t* words_dev, const uint32_t* states_dev,
                 const uint32_t* blockBytes_dev, const uint64_t* offsets_dev, int64_t n,
                 int logBlock, uint8_t* table_dev, uint8_t* data_dev, cudaStream_t stream);

// The decoder's frequency table, by value as the kernel's argument.
struct RansDecodeArgs {
  uint16_t freq[256];
  uint16_t cum[256];  // cum[s] = freq[0] + .. + freq[s - 1]
  int alphabet;
  int probBits;
  int logBlock;
};

// Why a block failed; the status word holds block << kStatusShift | code of the first failing
// block (all ones when none failed).
enum BlockError : uint64_t {
  kBadInitialState = 1,
  kWordsRunOut = 2,
  kWordsLeftOver = 3,
  kBadFinalState = 4,
};
constexpr int kStatusShift = 3;

// Decodes every block: block b occupies data_dev[offsets_dev[b], offsets_dev[b + 1]) (sizes
// already checked: at least the states, whole words) and fills sym_dev[b << logBlock, +m).
// *status_dev must be all ones beforehand.
void decodeBlocks(const uint8_t* data_dev, const uint64_t* offsets_dev, int64_t n,
                  const RansDecodeArgs& args, uint8_t* sym_dev, uint64_t* status_dev,
                  cudaStream_t stream);

}  // namespace cdl::kernels::cuda::detail
