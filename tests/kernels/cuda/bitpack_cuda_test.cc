#include "kernels/cuda/bitpack.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/base/bytes.h"
#include "kernels/bitpack.h"
#include "tests/kernels/cuda/device_buffer.h"

namespace cdl::kernels {
namespace {

using test::DeviceBuffer;

class BitpackCudaTest : public test::CudaTest {};

TEST_F(BitpackCudaTest, PackedBytesAndUnpackedSymbolsMatchTheCpuAtAnyAlignment) {
  std::mt19937_64 rng(3);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {0, 1, 7, 8, 9, 63, 64, 65, 1000, 100001}) {
      for (size_t offset : {0, 1, 3}) {
        Bytes sym(static_cast<size_t>(n));
        for (auto& s : sym) s = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
        Bytes cpu(packedBytes(n, bits));
        packBits(sym.data(), n, bits, cpu.data());
        DeviceBuffer<uint8_t> in(sym, offset);
        DeviceBuffer<uint8_t> packed(cpu.size(), offset);
        cuda::packBits(in.get(), n, bits, packed.get(), nullptr);
        ASSERT_EQ(packed.download(cpu.size()), cpu) << bits << " bits, n " << n;
        DeviceBuffer<uint8_t> back(sym.size(), offset);
        DeviceBuffer<int64_t> firstBad(1);
        cuda::unpackBits(packed.get(), n, bits, back.get(), 256, firstBad.get(), nullptr);
        ASSERT_EQ(back.download(sym.size()), sym) << bits << " bits, n " << n;
        ASSERT_EQ(firstBad.download(1)[0], -1);
      }
    }
  }
}

TEST_F(BitpackCudaTest, UnpackReportsTheFirstSymbolAtOrAboveTheLimit) {
  const Bytes sym = {1, 2, 3, 7, 0, 7, 6, 1, 2, 7};
  Bytes packed(packedBytes(10, 3));
  packBits(sym.data(), 10, 3, packed.data());
  DeviceBuffer<uint8_t> in(packed);
  DeviceBuffer<uint8_t> out(10);
  DeviceBuffer<int64_t> firstBad(1);
  cuda::unpackBits(in.get(), 10, 3, out.get(), 7, firstBad.get(), nullptr);
  EXPECT_EQ(firstBad.download(1)[0], 3);
  cuda::unpackBits(in.get(), 10, 3, out.get(), 8, firstBad.get(), nullptr);
  EXPECT_EQ(firstBad.download(1)[0], -1);
}

}  // namespace
}  // namespace cdl::kernels
