#include "comm/transport/nccl/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/device.h"
#include "tests/support/communicator_contract.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

constexpr std::chrono::seconds kWait(60);

#define CDL_SKIP_WITHOUT_GPU()                                                            \
  do {                                                                                    \
    if (!::cdl::kernels::cuda::cudaDeviceAvailable()) {                                   \
      GTEST_SKIP() << "no CUDA device: NCCL collectives need a GPU (the communicator is " \
                      "still compiled and linked here)";                                  \
    }                                                                                     \
  } while (0)

class DeviceFloats {
 public:
  explicit DeviceFloats(size_t n) : n_(n) {
    if (n_ > 0) CDL_CUDA_CHECK(cudaMalloc(&ptr_, n_ * sizeof(float)));
  }
  ~DeviceFloats() { cudaFree(ptr_); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;

  float* get() { return static_cast<float*>(ptr_); }
  void upload(const std::vector<float>& v) {
    CDL_CUDA_CHECK(cudaMemcpy(ptr_, v.data(), n_ * sizeof(float), cudaMemcpyHostToDevice));
  }
  std::vector<float> download() const {
    std::vector<float> v(n_);
    CDL_CUDA_CHECK(cudaMemcpy(v.data(), ptr_, n_ * sizeof(float), cudaMemcpyDeviceToHost));
    return v;
  }

 private:
  size_t n_;
  void* ptr_ = nullptr;
};

std::vector<float> pattern(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(i % 1013) - 7.0f;
  return v;
}

Bytes bytesOf(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + 31 * i);
  return b;
}

std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class NcclOneRank : public ::testing::Test {
 protected:
  void SetUp() override {
    CDL_SKIP_WITHOUT_GPU();
    comm_ = makeNcclCommunicator(makeLocalGroup(1)[0], 0);
  }

  std::shared_ptr<NcclCommunicator> comm_;
};

class NcclOneRankAllreduce : public NcclOneRank, public ::testing::WithParamInterface<int64_t> {};

TEST_P(NcclOneRankAllreduce, SumOverOneRankLeavesTheDeviceBufferUnchanged) {
  const int64_t n = GetParam();
  DeviceFloats buf(static_cast<size_t>(n));
  const std::vector<float> input = pattern(static_cast<size_t>(n), 0.5f);
  buf.upload(input);
  comm_->allreduce(buf.get(), n)->wait(kWait);
  EXPECT_EQ(buf.download(), input);
}

INSTANTIATE_TEST_SUITE_P(Sizes, NcclOneRankAllreduce,
                         ::testing::Values<int64_t>(0, 1, 1000, (int64_t{1} << 20) + 3));

TEST_F(NcclOneRank, ReportsRankSizeAndDevice) {
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->size(), 1);
  EXPECT_EQ(comm_->device(), 0);
  EXPECT_NE(comm_->stream(), nullptr);
  EXPECT_FALSE(comm_->aborted());
}

TEST_F(NcclOneRank, AllreduceRejectsAHostPointerWithAClearError) {
  std::vector<float> host(16, 1.0f);
  const std::string msg = errorOf([&] { comm_->allreduce(host.data(), 16); });
  EXPECT_NE(msg.find("device pointer"), std::string::npos) << msg;
}

TEST_F(NcclOneRank, StatesDeviceMemoryAndSendRecvToItselfMovesDeviceBytes) {
  EXPECT_EQ(comm_->memory(), MemoryKind::kDevice);
  const std::vector<float> input = pattern(1000, 0.25f);
  DeviceFloats from(1000), to(1000);
  from.upload(input);
  comm_->sendRecv(from.get(), 4000, 0, to.get(), 4000, 0, 1)->wait(kWait);
  EXPECT_EQ(to.download(), input);
}

TEST_F(NcclOneRank, SendRecvRejectsAHostPointerAtTheCall) {
  std::vector<float> host(16, 1.0f);
  DeviceFloats dev(16);
  const std::string msg =
      errorOf([&] { comm_->sendRecv(host.data(), 64, 0, dev.get(), 64, 0, 0); });
  EXPECT_NE(msg.find("sendRecv on the NCCL communicator needs a device pointer"), std::string::npos)
      << msg;
}

TEST_F(NcclOneRank, ByteCollectivesRoundTripIncludingEmptyAndLargeBuffers) {
  for (size_t n : {size_t{0}, size_t{3}, (size_t{1} << 20) + 1}) {
    const Bytes mine = bytesOf(n, 7);
    Bytes all = {1, 2};
    std::vector<size_t> sizes;
    comm_->allgatherv(mine, &all, &sizes)->wait(kWait);
    EXPECT_EQ(all, mine);
    EXPECT_EQ(sizes, std::vector<size_t>{n});

    std::vector<Bytes> got;
    comm_->alltoallv({mine}, &got)->wait(kWait);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], mine);

    Bytes data = mine;
    comm_->broadcast(&data, 0)->wait(kWait);
    EXPECT_EQ(data, mine);
  }
  comm_->barrier()->wait(kWait);
}

TEST_F(NcclOneRank, CollectivesIssuedBackToBackCompleteWhateverTheWaitOrder) {
  const Bytes mine = bytesOf(5000, 3);
  Bytes all;
  std::vector<size_t> sizes;
  DeviceFloats buf(4096);
  const std::vector<float> input = pattern(4096, 2.0f);
  buf.upload(input);
  std::vector<Bytes> got;
  Bytes data = bytesOf(777, 9);
  std::vector<std::shared_ptr<Work>> works = {
      comm_->allgatherv(mine, &all, &sizes), comm_->allreduce(buf.get(), 4096),
      comm_->alltoallv({mine}, &got), comm_->broadcast(&data, 0), comm_->barrier()};
  std::reverse(works.begin(), works.end());
  for (auto& w : works) w->wait(kWait);
  EXPECT_EQ(all, mine);
  EXPECT_EQ(buf.download(), input);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], mine);
  EXPECT_EQ(data, bytesOf(777, 9));
}

void CUDART_CB sleepOnStream(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(ms)));
}

// The compute stream is held by a host callback, then writes the buffer: the allreduce must not
// run before that write, and a short wait must time out naming the collective (not hang).
TEST_F(NcclOneRank, AllreduceFollowsTheComputeStreamAndShortWaitsTimeOutNamingIt) {
  constexpr size_t kN = 1 << 16;
  cudaStream_t compute = nullptr;
  CDL_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  float* pinned = nullptr;
  CDL_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned), kN * sizeof(float)));
  const std::vector<float> before = pattern(kN, 1.0f), after = pattern(kN, -3.0f);
  std::copy(after.begin(), after.end(), pinned);
  DeviceFloats buf(kN);
  buf.upload(before);

  static int sleepMs = 1500;
  CDL_CUDA_CHECK(cudaLaunchHostFunc(compute, sleepOnStream, &sleepMs));
  CDL_CUDA_CHECK(
      cudaMemcpyAsync(buf.get(), pinned, kN * sizeof(float), cudaMemcpyHostToDevice, compute));
  comm_->setComputeStream(compute);
  auto work = comm_->allreduce(buf.get(), kN);
  const std::string msg = errorOf([&] { work->wait(std::chrono::milliseconds(20)); });
  EXPECT_NE(msg.find("allreduce of 65536 floats"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did not complete"), std::string::npos) << msg;
  EXPECT_FALSE(comm_->aborted());

  work->wait(kWait);
  EXPECT_EQ(buf.download(), after);
  CDL_CUDA_CHECK(cudaStreamSynchronize(compute));
  comm_->setComputeStream(cudaStreamLegacy);
  CDL_CUDA_CHECK(cudaStreamDestroy(compute));
  CDL_CUDA_CHECK(cudaFreeHost(pinned));
}

TEST_F(NcclOneRank, CallsAfterAbortFailNamingTheReason) {
  comm_->barrier()->wait(kWait);
  comm_->abort("stopped by the test");
  EXPECT_TRUE(comm_->aborted());
  const std::string msg = errorOf([&] { comm_->barrier(); });
  EXPECT_NE(msg.find("aborted"), std::string::npos) << msg;
  EXPECT_NE(msg.find("stopped by the test"), std::string::npos) << msg;
}

// NCCL puts one rank per GPU, so several ranks need several GPUs: ranks run as threads here.
TEST(NcclRanks, KeepTheCommunicatorContractAcrossGpus) {
  CDL_SKIP_WITHOUT_GPU();
  int devices = 0;
  CDL_CUDA_CHECK(cudaGetDeviceCount(&devices));
  if (devices < 2) GTEST_SKIP() << "needs 2 or more GPUs (found " << devices << ")";
  const int size = std::min(devices, 4);
  auto group = makeLocalGroup(size);
  test::onThreadRanks(size, [&](int r) {
    CDL_CUDA_CHECK(cudaSetDevice(r));
    auto comm = makeNcclCommunicator(group[r], r);
    // The communicator contract (tests/support/communicator_contract.h), its allreduces on
    // device buffers.
    test::expectCommunicatorContract(*comm, [](Communicator& c, std::vector<float>& v) {
      DeviceFloats buf(v.size());
      buf.upload(v);
      c.allreduce(buf.get(), static_cast<int64_t>(v.size()))->wait(kWait);
      v = buf.download();
    });
  });
}

}  // namespace
}  // namespace cdl::comm
