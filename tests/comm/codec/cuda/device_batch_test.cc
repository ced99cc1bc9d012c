// Note [Codec batches] on device memory: a device batch gives the host batch's bytes and
// residuals, for the codecs with a device form and for top-k through host staging.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/codec/cuda/device_codec.h"
#include "comm/codec/spec.h"
#include "tests/kernels/cuda/device_buffer.h"
#include "tests/support/error_of.h"
#include "tests/support/gradient_like.h"

namespace cdl::comm {
namespace {

using test::gradientLike;

using test::DeviceBuffer;

// Runs without a GPU: a host batch given to the device entry point is the host codec's.
TEST(DeviceBatchOnHost, AHostPlaceIsTheHostBatch) {
  const CodecSpec s = parseCodecSpec("qsgd:bits=4,entropy=rans");
  const auto codec = makeCodec(s.codec);
  const std::vector<float> x = gradientLike(5000, 3);
  Bytes out(codec->maxEncodedBytes(5000, s.rate));
  std::vector<float> residual(x.size());
  EncodeChunk c{x.data(), 5000, 9, out.data(), out.size(), residual.data(), 0};
  cuda::encodeBatch(*codec, &c, 1, s.rate, BufferPlace{});
  const Bytes one = codec->encode(x.data(), 5000, s.rate, 9);
  ASSERT_EQ(c.bytes, one.size());
  EXPECT_TRUE(std::equal(one.begin(), one.end(), out.begin()));
}

class DeviceBatchTest : public test::CudaTest {};

TEST_F(DeviceBatchTest, ADeviceBatchGivesTheHostBatchsBytesAndResiduals) {
  const std::vector<int64_t> sizes = {0, 1, 1000, 70000};
  for (const char* text : {"none", "fp16", "bf16", "qsgd:bits=4,entropy=rans",
                           "qsgd:bits=3,rounding=nearest,entropy=none", "topk:density=0.05"}) {
    SCOPED_TRACE(text);
    const CodecSpec s = parseCodecSpec(text);
    const auto codec = makeCodec(s.codec);
    for (size_t i = 0; i < sizes.size(); ++i) {
      const int64_t n = sizes[i];
      const std::vector<float> x = gradientLike(n, 50 + i);
      const size_t cap = codec->maxEncodedBytes(n, s.rate);
      // Host.
      Bytes hostOut(cap);
      std::vector<float> hostResidual(x.size());
      EncodeChunk h{x.data(), n, 77 + i, hostOut.data(), cap, hostResidual.data(), 0};
      codec->encodeBatch(&h, 1, s.rate);
      // Device.
      DeviceBuffer<float> xd(x), rd(std::max<size_t>(x.size(), 1));
      DeviceBuffer<uint8_t> od(cap);
      EncodeChunk d{xd.get(), n, 77 + i, od.get(), cap, rd.get(), 0};
      BufferPlace gpu;
      gpu.memory = BufferMemory::kDevice;
      gpu.device = 0;
      cuda::encodeBatch(*codec, &d, 1, s.rate, gpu);
      ASSERT_EQ(d.bytes, h.bytes) << "n " << n;
      const Bytes got = od.download(d.bytes);
      EXPECT_TRUE(std::equal(got.begin(), got.end(), hostOut.begin())) << "n " << n;
      EXPECT_EQ(rd.download(x.size()), hostResidual) << "n " << n;
      // And back, on the device, adding to what is there.
      DeviceBuffer<float> back(x);
      const DecodeChunk dc{od.get(), d.bytes, back.get(), n, true};
      cuda::decodeBatch(*codec, &dc, 1, gpu);
      std::vector<float> want = x;
      codec->decode(hostOut.data(), h.bytes, want.data(), n, true);
      EXPECT_EQ(back.download(x.size()), want) << "n " << n;
    }
  }
}

TEST_F(DeviceBatchTest, AFailureNamesTheChunkAndTheDevice) {
  const CodecSpec s = parseCodecSpec("qsgd:bits=4");
  const auto codec = makeCodec(s.codec);
  std::vector<float> x = gradientLike(100, 1);
  x[17] = std::numeric_limits<float>::quiet_NaN();
  DeviceBuffer<float> xd(x);
  DeviceBuffer<uint8_t> od(codec->maxEncodedBytes(100, s.rate));
  EncodeChunk d{xd.get(), 100, 1, od.get(), codec->maxEncodedBytes(100, s.rate), nullptr, 0};
  BufferPlace gpu;
  gpu.memory = BufferMemory::kDevice;
  gpu.device = 0;
  const std::string e = test::errorOf([&] { cuda::encodeBatch(*codec, &d, 1, s.rate, gpu); });
  EXPECT_NE(e.find("chunk 0 of 1 on cuda:0"), std::string::npos) << e;
  EXPECT_NE(e.find("element 17"), std::string::npos) << e;
}

}  // namespace
}  // namespace cdl::comm
