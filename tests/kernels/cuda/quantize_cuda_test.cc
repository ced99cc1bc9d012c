#include "kernels/cuda/quantize.h"

#include <cuda_runtime_api.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/histogram.h"
#include "kernels/histogram.h"
#include "kernels/quantize.h"
#include "kernels/rng.h"
#include "tests/kernels/cuda/device_buffer.h"

namespace cdl::kernels {
namespace {

using test::DeviceBuffer;

std::vector<float> gradientLike(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = (rng() % 8 == 0 ? 10.0f : 0.01f) * normal(rng) * std::exp(normal(rng));
  return x;
}

// Bitwise equality, so that +0 / -0 and any rounding difference count as mismatches.
template <typename T>
void expectBitIdentical(const std::vector<T>& gpu, const std::vector<T>& cpu, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (size_t i = 0; i < gpu.size(); ++i) {
    ASSERT_EQ(std::memcmp(&gpu[i], &cpu[i], sizeof(T)), 0)
        << what << " differs at " << i << ": gpu " << +gpu[i] << " cpu " << +cpu[i];
  }
}

class QuantizeCudaTest : public test::CudaTest {
 protected:
  void SetUp() override {
    test::CudaTest::SetUp();
    if (IsSkipped()) return;
    CDL_CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Quantizes on both sides, compares symbols and scales bitwise, then does the same for the
  // dequantized values, plain and accumulated.
  void compareWithCpu(const std::vector<float>& x, const QuantizeParams& p, size_t offset) {
    const int64_t n = static_cast<int64_t>(x.size());
    const int64_t nb = numBuckets(n, p.bucket);
    std::vector<uint8_t> sym(x.size());
    std::vector<float> scales(static_cast<size_t>(nb));
    quantize(x.data(), n, p, sym.data(), scales.data());

    DeviceBuffer<float> xDev(x.size(), 4 * offset);
    DeviceBuffer<uint8_t> symDev(x.size(), offset);
    DeviceBuffer<float> scalesDev(scales.size());
    xDev.upload(x);
    cuda::quantize(xDev.get(), n, p, symDev.get(), scalesDev.get(), stream_);
    const auto symGpu = symDev.download(x.size());
    expectBitIdentical(symGpu, sym, "symbols");
    expectBitIdentical(scalesDev.download(scales.size()), scales, "scales");

    const std::vector<float> base = gradientLike(n, 99);
    for (bool accumulate : {false, true}) {
      std::vector<float> out = base;
      dequantize(sym.data(), scales.data(), n, p.bits, p.bucket, out.data(), accumulate);
      DeviceBuffer<float> outDev(x.size(), 4 * offset);
      outDev.upload(base);
      cuda::dequantize(symDev.get(), scalesDev.get(), n, p.bits, p.bucket, outDev.get(), accumulate,
                       stream_);
      CDL_CUDA_CHECK(cudaStreamSynchronize(stream_));
      expectBitIdentical(outDev.download(x.size()), out,
                         accumulate ? "accumulated values" : "dequantized values");
    }
  }

  cudaStream_t stream_ = nullptr;
};

TEST_F(QuantizeCudaTest, QuantizeAndDequantizeMatchTheCpuBitForBit) {
  for (int64_t n : {0, 1, 7, 1000, 100003}) {
    const auto x = gradientLike(n, static_cast<uint64_t>(n));
    for (int bits = 1; bits <= 8; ++bits) {
      for (int64_t bucket : {int64_t{1}, int64_t{3}, int64_t{64}, int64_t{1024}, int64_t{200000}}) {
        for (Rounding r : {Rounding::kNearest, Rounding::kStochastic}) {
          SCOPED_TRACE(::testing::Message() << "n " << n << " bits " << bits << " bucket " << bucket
                                            << " rounding " << int(r));
          compareWithCpu(x, QuantizeParams{bits, bucket, r, roundingKey(5, bits, n)}, 0);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_F(QuantizeCudaTest, MisalignedBuffersGiveTheSameResults) {
  const auto x = gradientLike(4099, 3);
  for (size_t offset : {1, 2, 3}) {
    SCOPED_TRACE(::testing::Message() << "offset " << offset);
    compareWithCpu(x, QuantizeParams{4, 512, Rounding::kStochastic, 17}, offset);
    if (HasFatalFailure()) return;
  }
}

TEST_F(QuantizeCudaTest, ManyGridStridesMatchTheCpu) {
  const auto x = gradientLike((int64_t{1} << 23) + 12345, 4);
  compareWithCpu(x, QuantizeParams{4, 1024, Rounding::kStochastic, 23}, 0);
  compareWithCpu(x, QuantizeParams{3, 100, Rounding::kNearest, 0}, 0);
}

TEST_F(QuantizeCudaTest, ZeroBucketsAndExtremeMagnitudesMatchTheCpu) {
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float huge = std::numeric_limits<float>::max();
  std::vector<float> x = {0.0f, -0.0f, 0.0f, 0.0f, tiny,  -tiny,  3 * tiny, 1e-42f,
                          huge, -huge, 1.0f, 0.0f, 1e30f, -2e30f, 0.0f,     0.0f};
  for (int bits = 1; bits <= 8; ++bits) {
    for (Rounding r : {Rounding::kNearest, Rounding::kStochastic}) {
      SCOPED_TRACE(::testing::Message() << "bits " << bits << " rounding " << int(r));
      compareWithCpu(x, QuantizeParams{bits, 4, r, 9}, 0);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(QuantizeCudaTest, NonFiniteInputThrowsNamingTheFirstBadElement) {
  auto x = gradientLike(5000, 5);
  x[4321] = std::numeric_limits<float>::infinity();
  x[1234] = std::numeric_limits<float>::quiet_NaN();
  DeviceBuffer<float> xDev(x.size());
  DeviceBuffer<uint8_t> symDev(x.size());
  DeviceBuffer<float> scalesDev(x.size());
  xDev.upload(x);
  try {
    cuda::quantize(xDev.get(), 5000, QuantizeParams{}, symDev.get(), scalesDev.get(), stream_);
    ADD_FAILURE() << "no error for a NaN input";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("element 1234 is nan"));
  }
  x[1234] = 0.0f;
  xDev.upload(x);
  try {
    cuda::quantize(xDev.get(), 5000, QuantizeParams{}, symDev.get(), scalesDev.get(), stream_);
    ADD_FAILURE() << "no error for an infinite input";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("element 4321 is inf"));
  }
}

TEST_F(QuantizeCudaTest, InvalidParametersThrowBeforeLaunching) {
  DeviceBuffer<float> buf(16);
  uint8_t* sym = reinterpret_cast<uint8_t*>(buf.get());
  EXPECT_THROW(cuda::quantize(buf.get(), 16, QuantizeParams{9, 4, Rounding::kNearest, 0}, sym,
                              buf.get(), stream_),
               Error);
  EXPECT_THROW(cuda::quantize(buf.get(), 16, QuantizeParams{4, 0, Rounding::kNearest, 0}, sym,
                              buf.get(), stream_),
               Error);
  EXPECT_THROW(cuda::quantize(nullptr, 16, QuantizeParams{}, sym, buf.get(), stream_), Error);
  EXPECT_THROW(cuda::dequantize(sym, buf.get(), -1, 4, 4, buf.get(), false, stream_), Error);
  EXPECT_NO_THROW(cuda::quantize(nullptr, 0, QuantizeParams{}, nullptr, nullptr, stream_));
}

TEST_F(QuantizeCudaTest, HistogramMatchesTheCpu) {
  std::mt19937_64 rng(6);
  std::geometric_distribution<int> geo(0.3);
  for (int64_t n : {0, 1, 15, 16, 17, 1000, 100003, 3000001}) {
    for (size_t offset : {0, 1, 7}) {
      std::vector<uint8_t> sym(static_cast<size_t>(n));
      for (auto& v : sym) v = static_cast<uint8_t>(n % 2 ? geo(rng) % 256 : rng() % 256);
      uint64_t cpu[256];
      histogram(sym.data(), n, cpu);
      DeviceBuffer<uint8_t> symDev(sym.size(), offset);
      DeviceBuffer<uint64_t> countsDev(256);
      symDev.upload(sym);
      cuda::histogram(symDev.get(), n, countsDev.get(), stream_);
      CDL_CUDA_CHECK(cudaStreamSynchronize(stream_));
      const auto gpu = countsDev.download(256);
      for (int s = 0; s < 256; ++s) {
        ASSERT_EQ(gpu[s], cpu[s]) << "n " << n << " offset " << offset << " symbol " << s;
      }
    }
  }
}

TEST(CudaCheckTest, FailedCallsThrowWithTheCudaErrorString) {
  if (!cuda::cudaDeviceAvailable()) {
    GTEST_SKIP() << "no CUDA device visible; CDL_CUDA_CHECK is exercised on a GPU machine";
  }
  try {
    CDL_CUDA_CHECK(cudaSetDevice(1 << 20));
    ADD_FAILURE() << "no error for an invalid device";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("cudaErrorInvalidDevice"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("cudaSetDevice"));
  }
}

}  // namespace
}  // namespace cdl::kernels
