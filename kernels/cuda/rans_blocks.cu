#include "kernels/cuda/rans_blocks.h"

#include <algorithm>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/rans.h"

namespace cdl::kernels::cuda::detail {
namespace {

constexpr uint32_t kLow = 1u << 15;  // states live in [kLow, kLow << 16)
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpsPerCta = 4;
constexpr int kMaxCtas = 1 << 16;
constexpr int kScanThreads = 1024;
constexpr int kCopyThreads = 256;
static_assert(kRansLanes == 32, "one warp lane per interleaved state");

int ctasFor(int64_t blocks) {
  return static_cast<int>(
      std::clamp<int64_t>((blocks + kWarpsPerCta - 1) / kWarpsPerCta, 1, kMaxCtas));
}

__device__ __forceinline__ int64_t blockLength(int64_t b, int64_t n, int logBlock) {
  const int64_t first = b << logBlock;
  const int64_t len = int64_t{1} << logBlock;
  return n - first < len ? n - first : len;
}

// Note [Warp rANS step]
// Lane l of a warp is lane l of the block's interleaved states, so one warp-wide step codes
// symbols 32t .. 32t+31. The encoder runs the steps last to first, and within a step the CPU
// pushes the words of lanes 31 down to 0, each below the previous: the step's words end up in
// lane order, below those of the later steps. A ballot of the lanes that give up a word and the
// count of set bits below each lane therefore place every word exactly where the CPU does, in one
// step for all lanes. The decoder mirrors it: the lanes that take a word take the next ones in
// lane order, each at its rank in the ballot.
struct EncSymbol {
  uint32_t xmax;
  uint32_t rcp;
  uint32_t biasCmpl;
  uint32_t shift;
};

__global__ void __launch_bounds__(kWarpsPerCta * 32)
    encodeBlocksKernel(const uint8_t* __restrict__ sym, int64_t n, const RansEncodeArgs args,
                       uint16_t* __restrict__ words, uint32_t* __restrict__ states,
                       uint32_t* __restrict__ blockBytes) {
  __shared__ EncSymbol table[256];
  for (int s = threadIdx.x; s < 256; s += blockDim.x) {
    table[s] = {args.xmax[s], args.rcp[s], args.biasCmpl[s], args.shift[s]};
  }
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const unsigned below = (1u << lane) - 1u;
  const int64_t blocks = ((n - 1) >> args.logBlock) + 1;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerCta;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32; b < blocks;
       b += warps) {
    const int64_t first = b << args.logBlock;
    const int64_t m = blockLength(b, n, args.logBlock);
    const int64_t steps = m / 32;
    const int rest = static_cast<int>(m % 32);
    const int64_t top = first + m;
    int64_t p = top;
    uint32_t x = kLow;
    int64_t t = rest > 0 ? steps : steps - 1;
    // The next step's symbol is loaded one step ahead, so its latency hides behind the math.
    uint8_t next = (t < steps || lane < rest) ? sym[first + 32 * t + lane] : 0;
    for (; t >= 0; --t) {
      const bool active = t < steps || lane < rest;
      const EncSymbol e = table[next];
      if (t > 0) next = sym[first + 32 * (t - 1) + lane];
      const bool emit = active && x >= e.xmax;
      const unsigned ballot = __ballot_sync(kFullMask, emit);
      const int count = __popc(ballot);
      if (emit) words[p - count + __popc(ballot & below)] = static_cast<uint16_t>(x);
      p -= count;
      if (active) {
        if (emit) x >>= 16;
        const uint32_t q = __umulhi(x, e.rcp) >> e.shift;
        x = x + (e.biasCmpl & 0xffffu) + q * (e.biasCmpl >> 16);
      }
    }
    states[32 * b + lane] = x;
    if (lane == 0) blockBytes[b] = static_cast<uint32_t>(4 * 32 + 2 * (top - p));
  }
}

// One CTA: each thread sums a contiguous run of blocks, the CTA scans the sums, and each thread
// writes its run's offsets.
__global__ void __launch_bounds__(kScanThreads)
    blockOffsetsKernel(const uint32_t* __restrict__ bytes, int64_t blocks,
                       uint64_t* __restrict__ offsets) {
  __shared__ uint64_t sums[kScanThreads];
  const int tid = threadIdx.x;
  const int64_t per = (blocks + kScanThreads - 1) / kScanThreads;
  const int64_t lo = tid * per < blocks ? tid * per : blocks;
  const int64_t hi = lo + per < blocks ? lo + per : blocks;
  uint64_t own = 0;
  for (int64_t b = lo; b < hi; ++b) own += bytes[b];
  sums[tid] = own;
  __syncthreads();
  for (int d = 1; d < kScanThreads; d *= 2) {
    const uint64_t add = tid >= d ? sums[tid - d] : 0;
    __syncthreads();
    sums[tid] += add;
    __syncthreads();
  }
  uint64_t run = sums[tid] - own;
  for (int64_t b = lo; b < hi; ++b) {
    offsets[b] = run;
    run += bytes[b];
  }
  if (tid == kScanThreads - 1) offsets[blocks] = sums[tid];
}

__device__ __forceinline__ void storeU16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// One CTA a block: its table entry, then its 64 half-states and its words as 16-bit values.
__global__ void writeBlocksKernel(const uint16_t* __restrict__ words,
                                  const uint32_t* __restrict__ states,
                                  const uint32_t* __restrict__ blockBytes,
                                  const uint64_t* __restrict__ offsets, int64_t n, int logBlock,
                                  uint8_t* __restrict__ table, uint8_t* __restrict__ data) {
  const int64_t blocks = ((n - 1) >> logBlock) + 1;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const uint32_t bytes = blockBytes[b];
    const int64_t count = bytes / 2;  // 16-bit values: 64 of states, then the words
    const int64_t wordStart = (b << logBlock) + blockLength(b, n, logBlock) - (count - 64);
    uint8_t* dst = data + offsets[b];
    if (threadIdx.x == 0) {
      storeU16(table + 4 * b, bytes & 0xffffu);
      storeU16(table + 4 * b + 2, bytes >> 16);
    }
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
      const uint32_t v =
          j < 64 ? states[32 * b + j / 2] >> (16 * (j % 2)) : words[wordStart + j - 64];
      storeU16(dst + 2 * j, v & 0xffffu);
    }
  }
}

__device__ __forceinline__ uint32_t loadU16(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8;
}

__device__ __forceinline__ void report(unsigned long long* status, int64_t block, uint64_t code) {
  atomicMin(status, static_cast<unsigned long long>(block) << kStatusShift | code);
}

// Decodes one block with the calling warp; returns the error code, or 0.
__device__ uint64_t decodeOneBlock(const uint8_t* __restrict__ base, int64_t wordEnd, int64_t m,
                                   const uint8_t* __restrict__ slotSym, const uint16_t* freq,
                                   const uint16_t* cum, int probBits, uint8_t* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const unsigned below = (1u << lane) - 1u;
  const uint32_t mask = (1u << probBits) - 1u;
  uint32_t x = loadU16(base + 4 * lane) | loadU16(base + 4 * lane + 2) << 16;
  if (__any_sync(kFullMask, x < kLow || x >= (kLow << 16))) return kBadInitialState;
  const int64_t steps = m / 32;
  const int rest = static_cast<int>(m % 32);
  int64_t w = 64;  // 16-bit values of the block read so far
  for (int64_t t = 0; t < steps + (rest > 0 ? 1 : 0); ++t) {
    const bool active = t < steps || lane < rest;
    uint32_t s = 0;
    if (active) {
      const uint32_t slot = x & mask;
      s = slotSym[slot];
      x = freq[s] * (x >> probBits) + slot - cum[s];
    }
    const bool take = active && x < kLow;
    const unsigned ballot = __ballot_sync(kFullMask, take);
    const int count = __popc(ballot);
    if (w + count > wordEnd) return kWordsRunOut;
    if (take) x = x << 16 | loadU16(base + 2 * (w + __popc(ballot & below)));
    w += count;
    if (active) out[32 * t + lane] = static_cast<uint8_t>(s);
  }
  if (w != wordEnd) return kWordsLeftOver;
  if (__any_sync(kFullMask, x != kLow)) return kBadFinalState;
  return 0;
}

__global__ void __launch_bounds__(kWarpsPerCta * 32)
    decodeBlocksKernel(const uint8_t* __restrict__ data, const uint64_t* __restrict__ offsets,
                       int64_t n, const RansDecodeArgs args, uint8_t* __restrict__ sym,
                       unsigned long long* __restrict__ status) {
  extern __shared__ uint8_t slotSym[];  // 2^probBits: the symbol of every slot
  __shared__ uint16_t freq[256];
  __shared__ uint16_t cum[256];
  for (int s = threadIdx.x; s < 256; s += blockDim.x) {
    freq[s] = args.freq[s];
    cum[s] = args.cum[s];
  }
  for (int s = 0; s < args.alphabet; ++s) {
    for (int k = threadIdx.x; k < args.freq[s]; k += blockDim.x) slotSym[args.cum[s] + k] = s;
  }
  __syncthreads();
  const int64_t blocks = ((n - 1) >> args.logBlock) + 1;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerCta;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32; b < blocks;
       b += warps) {
    const uint64_t start = offsets[b];
    const int64_t wordEnd = static_cast<int64_t>((offsets[b + 1] - start) / 2);
    const uint64_t code =
        decodeOneBlock(data + start, wordEnd, blockLength(b, n, args.logBlock), slotSym, freq, cum,
                       args.probBits, sym + (b << args.logBlock));
    if (code != 0 && threadIdx.x % 32 == 0) report(status, b, code);
  }
}

}  // namespace

void encodeBlocks(const uint8_t* sym_dev, int64_t n, const RansEncodeArgs& args,
                  uint16_t* words_dev, uint32_t* states_dev, uint32_t* blockBytes_dev,
                  cudaStream_t stream) {
  const int64_t blocks = ((n - 1) >> args.logBlock) + 1;
  encodeBlocksKernel<<<ctasFor(blocks), kWarpsPerCta * 32, 0, stream>>>(sym_dev, n, args, words_dev,
                                                                        states_dev, blockBytes_dev);
  CDL_CUDA_CHECK(cudaGetLastError());
}

void blockOffsets(const uint32_t* blockBytes_dev, int64_t blocks, uint64_t* offsets_dev,
                  cudaStream_t stream) {
  blockOffsetsKernel<<<1, kScanThreads, 0, stream>>>(blockBytes_dev, blocks, offsets_dev);
  CDL_CUDA_CHECK(cudaGetLastError());
}

void writeBlocks(const uint16_t* words_dev, const uint32_t* states_dev,
                 const uint32_t* blockBytes_dev, const uint64_t* offsets_dev, int64_t n,
                 int logBlock, uint8_t* table_dev, uint8_t* data_dev, cudaStream_t stream) {
  const int64_t blocks = ((n - 1) >> logBlock) + 1;
  const int ctas = static_cast<int>(std::min<int64_t>(blocks, kMaxCtas));
  writeBlocksKernel<<<ctas, kCopyThreads, 0, stream>>>(
      words_dev, states_dev, blockBytes_dev, offsets_dev, n, logBlock, table_dev, data_dev);
  CDL_CUDA_CHECK(cudaGetLastError());
}

void decodeBlocks(const uint8_t* data_dev, const uint64_t* offsets_dev, int64_t n,
                  const RansDecodeArgs& args, uint8_t* sym_dev, uint64_t* status_dev,
                  cudaStream_t stream) {
  const int64_t blocks = ((n - 1) >> args.logBlock) + 1;
  const size_t shared = size_t{1} << args.probBits;  // at most 32 KiB: below the default limit
  decodeBlocksKernel<<<ctasFor(blocks), kWarpsPerCta * 32, shared, stream>>>(
      data_dev, offsets_dev, n, args, sym_dev, reinterpret_cast<unsigned long long*>(status_dev));
  CDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cdl::kernels::cuda::detail
