// Communicator over NCCL (Note [NCCL communicator] in nccl_communicator.h). Each collective is an
// Op: a list of launches that issue stream work on the communicator's stream, each after the
// previous one's event completed (a launch may need what the previous one copied back, such as the
// sizes), and a host step that runs once the last event completed. Ops are launched in call order
// by progress(), which every call and every Work's poll() drives.
#include "comm/transport/nccl/nccl_communicator.h"

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>
#include "kernels/base/knobs.h"

#include "kernels/base/checks.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

using Clock = std::chrono::steady_clock;

std::exception_ptr makeError(const std::string& msg) {
  try {
    CDL_THROW(msg);
  } catch (...) {
    return std::current_exception();
  }
}

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

// Makes `device` current on the calling thread while the guard lives.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : device_(device) {
    CDL_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device_) CDL_CUDA_CHECK(cudaSetDevice(device_));
  }
  ~DeviceGuard() {
    if (previous_ != device_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int previous_ = 0;
};

struct Block {
  uint8_t* ptr = nullptr;
  size_t bytes = 0;
};

// Staging buffers (pinned host or device memory) kept for reuse, so that steady-state collectives
// allocate nothing and nothing is freed (cudaFree synchronizes the device) while NCCL work may be
// stuck. Sizes are rounded up to powers of two.
class BlockCache {
 public:
  explicit BlockCache(bool pinned) : pinned_(pinned) {}

  Block acquire(size_t bytes) {
    if (bytes == 0) return {};
    size_t cap = kMinBytes;
    while (cap < bytes) cap <<= 1;
    auto it = free_.find(cap);
    if (it != free_.end()) {
      Block b{it->second, cap};
      free_.erase(it);
      return b;
    }
    void* p = nullptr;
    if (pinned_) {
      CDL_CUDA_CHECK(cudaHostAlloc(&p, cap, cudaHostAllocDefault));
    } else {
      CDL_CUDA_CHECK(cudaMalloc(&p, cap));
    }
    return {static_cast<uint8_t*>(p), cap};
  }

  void release(const Block& b) {
    if (b.ptr != nullptr) free_.emplace(b.bytes, b.ptr);
  }

  void freeBlock(const Block& b) const {
    if (b.ptr == nullptr) return;
    if (pinned_) {
      cudaFreeHost(b.ptr);
    } else {
      cudaFree(b.ptr);
    }
  }

  void freeAll() {
    for (const auto& [bytes, ptr] : free_) freeBlock(Block{ptr, bytes});
    free_.clear();
  }

 private:
  static constexpr size_t kMinBytes = 256;
  bool pinned_;
  std::multimap<size_t, uint8_t*> free_;
};

struct Op {
  using Launch = std::function<void(Op&)>;

  ~Op() {
    if (event != nullptr) cudaEventDestroy(event);
    if (ready != nullptr) cudaEventDestroy(ready);
  }

  std::string what;
  std::vector<Launch> launches;
  std::function<void()> complete;  // host step after the last launch's work finished
  size_t next = 0;                 // launches issued so far
  bool inFlight = false;           // `event` follows the last launch and has not completed yet
  cudaEvent_t event = nullptr;
  cudaEvent_t ready = nullptr;  // the caller's compute-stream work this op must follow
  Clock::time_point launchedAt;
  std::vector<Block> pinned, device;
  std::exception_ptr error;  // written before `done`
  std::atomic<bool> done{false};
};

class NcclComm;

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<NcclComm> comm, std::shared_ptr<Op> op);
  bool polled() const override { return true; }

 protected:
  bool poll() override;
  std::string missing() const override;

 private:
  std::shared_ptr<NcclComm> comm_;
  std::shared_ptr<Op> op_;
};

class NcclComm final : public NcclCommunicator, public std::enable_shared_from_this<NcclComm> {
 public:
  NcclComm(const ncclUniqueId& id, int rank, int size, int device)
      : rank_(rank), size_(size), device_(device), timeout_(knobSeconds(kKnobCommTimeout)) {
    DeviceGuard guard(device_);
    CDL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const ncclResult_t rc = ncclCommInitRank(&comm_, size_, id, rank_);
    if (rc != ncclSuccess) {
      cudaStreamDestroy(stream_);
      CDL_THROW("ncclCommInitRank (rank ", rank_, " of ", size_, " on device ", device_,
                ") failed: ", ncclGetErrorString(rc), "; ", ncclGetLastError(nullptr));
    }
  }

  ~NcclComm() override {
    try {
      DeviceGuard guard(device_);
      // Finishes the collectives nobody waited for, so that peers in them are not cut off; one that
      // a peer never joins holds the teardown at most CDL_COMM_TIMEOUT, then aborts.
      const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_);
      while (!aborted_ && (!queue_.empty() || cudaStreamQuery(stream_) == cudaErrorNotReady)) {
        if (timeout_ > 0 && Clock::now() >= deadline) {
          abortLocked("destroyed with collectives unfinished");
          break;
        }
        progressLocked();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (comm_ != nullptr) ncclCommDestroy(comm_);
      // After an abort the stream drains as the aborted kernels exit; memory the GPU may still
      // touch is left allocated rather than freed under it.
      const auto drainUntil = Clock::now() + std::chrono::seconds(1);
      while (cudaStreamQuery(stream_) == cudaErrorNotReady && Clock::now() < drainUntil) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (cudaStreamQuery(stream_) == cudaSuccess) {
        pinned_.freeAll();
        deviceBlocks_.freeAll();
        for (const Block& b : orphanPinned_) pinned_.freeBlock(b);
        for (const Block& b : orphanDevice_) deviceBlocks_.freeBlock(b);
      }
      cudaStreamDestroy(stream_);
    } catch (...) {
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemoryKind memory() const override { return MemoryKind::kDevice; }
  int device() const override { return device_; }
  cudaStream_t stream() const override { return stream_; }

  void setComputeStream(cudaStream_t stream) override {
    std::lock_guard<std::mutex> lock(mu_);
    compute_ = stream;
  }

  void abort(const std::string& reason) override {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    abortLocked(reason);
  }

  bool aborted() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return aborted_;
  }

  std::shared_ptr<Work> allreduce(float* data, int64_t n) override {
    CDL_CHECK(n >= 0 && (data != nullptr || n == 0), "allreduce: bad buffer (n = ", n, ")");
    auto op = std::make_shared<Op>();
    if (n > 0) {
      checkDevicePointer(data, "allreduce");
      op->launches.push_back([this, data, n](Op& o) {
        CDL_CUDA_CHECK(cudaStreamWaitEvent(stream_, o.ready, 0));
        CDL_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclSum,
                                     comm_, stream_));
      });
    }
    return submit("allreduce of " + std::to_string(n) + " floats", op, n > 0);
  }

  std::shared_ptr<Work> allgatherv(const Bytes& send, Bytes* recv,
                                   std::vector<size_t>* sizes) override {
    CDL_CHECK(recv != nullptr && sizes != nullptr, "allgatherv: null output");
    struct State {
      uint64_t* counts = nullptr;  // pinned: size_ counts, then this rank's
      uint8_t* data = nullptr;     // pinned: the gathered bytes
      size_t total = 0;
    };
    auto st = std::make_shared<State>();
    auto op = std::make_shared<Op>();
    const int n = size_;
    const uint64_t mine = send.size();
    op->launches.push_back([this, st, n, mine](Op& o) {
      st->counts = reinterpret_cast<uint64_t*>(stage(o, (n + 1) * sizeof(uint64_t), true));
      auto* dev = reinterpret_cast<uint64_t*>(stage(o, (n + 1) * sizeof(uint64_t), false));
      st->counts[n] = mine;
      toDevice(dev + n, st->counts + n, sizeof(uint64_t));
      CDL_NCCL_CHECK(ncclAllGather(dev + n, dev, 1, ncclUint64, comm_, stream_));
      toHost(st->counts, dev, n * sizeof(uint64_t));
    });
    op->launches.push_back([this, st, n, &send](Op& o) {
      std::vector<size_t> displs(n);
      for (int r = 0; r < n; ++r) {
        displs[r] = st->total;
        st->total += st->counts[r];
      }
      if (st->total == 0) return;
      st->data = stage(o, st->total, true);
      uint8_t* dev = stage(o, st->total, false);
      if (!send.empty()) std::memcpy(st->data + displs[rank_], send.data(), send.size());
      toDevice(dev + displs[rank_], st->data + displs[rank_], send.size());
      grouped([&] {
        for (int r = 0; r < n; ++r) {
          if (st->counts[r] == 0) continue;
          CDL_NCCL_CHECK(ncclBroadcast(dev + displs[r], dev + displs[r], st->counts[r], ncclUint8,
                                       r, comm_, stream_));
        }
      });
      toHost(st->data, dev, st->total);
    });
    op->complete = [st, n, recv, sizes] {
      sizes->assign(st->counts, st->counts + n);
      recv->assign(st->data, st->data + st->total);
    };
    return submit("allgatherv of " + std::to_string(send.size()) + " bytes", op, false);
  }

  std::shared_ptr<Work> alltoallv(const std::vector<Bytes>& send,
                                  std::vector<Bytes>* recv) override {
    CDL_CHECK(static_cast<int>(send.size()) == size_, "alltoallv: ", send.size(),
              " send buffers for ", size_, " ranks");
    CDL_CHECK(recv != nullptr, "alltoallv: null output");
    struct State {
      uint64_t* counts = nullptr;  // pinned: size_ send counts, then size_ receive counts
      std::vector<size_t> recvDispls;
      uint8_t* recvData = nullptr;  // pinned
    };
    auto st = std::make_shared<State>();
    auto op = std::make_shared<Op>();
    const int n = size_;
    op->launches.push_back([this, st, n, &send](Op& o) {
      st->counts = reinterpret_cast<uint64_t*>(stage(o, 2 * n * sizeof(uint64_t), true));
      auto* dev = reinterpret_cast<uint64_t*>(stage(o, 2 * n * sizeof(uint64_t), false));
      for (int r = 0; r < n; ++r) st->counts[r] = send[r].size();
      toDevice(dev, st->counts, n * sizeof(uint64_t));
      grouped([&] {
        for (int r = 0; r < n; ++r) {
          CDL_NCCL_CHECK(ncclSend(dev + r, 1, ncclUint64, r, comm_, stream_));
          CDL_NCCL_CHECK(ncclRecv(dev + n + r, 1, ncclUint64, r, comm_, stream_));
        }
      });
      toHost(st->counts + n, dev + n, n * sizeof(uint64_t));
    });
    op->launches.push_back([this, st, n, &send](Op& o) {
      const uint64_t* sendCounts = st->counts;
      const uint64_t* recvCounts = st->counts + n;
      std::vector<size_t> sendDispls(n);
      st->recvDispls.resize(n + 1);
      size_t sendTotal = 0, recvTotal = 0;
      for (int r = 0; r < n; ++r) {
        sendDispls[r] = sendTotal;
        sendTotal += sendCounts[r];
        st->recvDispls[r] = recvTotal;
        recvTotal += recvCounts[r];
      }
      st->recvDispls[n] = recvTotal;
      if (sendTotal + recvTotal == 0) return;
      uint8_t* host = stage(o, sendTotal + recvTotal, true);
      uint8_t* dev = stage(o, sendTotal + recvTotal, false);
      for (int r = 0; r < n; ++r) {
        if (!send[r].empty()) std::memcpy(host + sendDispls[r], send[r].data(), send[r].size());
      }
      toDevice(dev, host, sendTotal);
      grouped([&] {
        for (int r = 0; r < n; ++r) {
          if (sendCounts[r] > 0) {
            CDL_NCCL_CHECK(
                ncclSend(dev + sendDispls[r], sendCounts[r], ncclUint8, r, comm_, stream_));
          }
          if (recvCounts[r] > 0) {
            CDL_NCCL_CHECK(ncclRecv(dev + sendTotal + st->recvDispls[r], recvCounts[r], ncclUint8,
                                    r, comm_, stream_));
          }
        }
      });
      st->recvData = host + sendTotal;
      toHost(st->recvData, dev + sendTotal, recvTotal);
    });
    op->complete = [st, n, recv] {
      recv->assign(n, Bytes());
      for (int r = 0; r < n; ++r) {
        (*recv)[r].assign(st->recvData + st->recvDispls[r], st->recvData + st->recvDispls[r + 1]);
      }
    };
    return submit("alltoallv", op, false);
  }

  std::shared_ptr<Work> broadcast(Bytes* data, int root) override {
    CDL_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside ", size_, " ranks");
    CDL_CHECK(data != nullptr, "broadcast: null buffer");
    struct State {
      uint64_t* length = nullptr;  // pinned
      uint8_t* bytes = nullptr;    // pinned
    };
    auto st = std::make_shared<State>();
    auto op = std::make_shared<Op>();
    const bool isRoot = root == rank_;
    op->launches.push_back([this, st, data, root, isRoot](Op& o) {
      st->length = reinterpret_cast<uint64_t*>(stage(o, sizeof(uint64_t), true));
      auto* dev = reinterpret_cast<uint64_t*>(stage(o, sizeof(uint64_t), false));
      *st->length = data->size();
      if (isRoot) toDevice(dev, st->length, sizeof(uint64_t));
      CDL_NCCL_CHECK(ncclBroadcast(dev, dev, 1, ncclUint64, root, comm_, stream_));
      if (!isRoot) toHost(st->length, dev, sizeof(uint64_t));
    });
    op->launches.push_back([this, st, data, root, isRoot](Op& o) {
      const size_t len = *st->length;
      if (len == 0) return;
      st->bytes = stage(o, len, true);
      uint8_t* dev = stage(o, len, false);
      if (isRoot) {
        std::memcpy(st->bytes, data->data(), len);
        toDevice(dev, st->bytes, len);
      }
      CDL_NCCL_CHECK(ncclBroadcast(dev, dev, len, ncclUint8, root, comm_, stream_));
      if (!isRoot) toHost(st->bytes, dev, len);
    });
    op->complete = [st, data, isRoot] {
      if (!isRoot) data->assign(st->bytes, st->bytes + *st->length);
    };
    return submit("broadcast from rank " + std::to_string(root), op, false);
  }

  std::shared_ptr<Work> barrier() override {
    auto op = std::make_shared<Op>();
    op->launches.push_back([this](Op& o) {
      auto* dev = reinterpret_cast<float*>(stage(o, sizeof(float), false));
      CDL_CUDA_CHECK(cudaMemsetAsync(dev, 0, sizeof(float), stream_));
      CDL_NCCL_CHECK(ncclAllReduce(dev, dev, 1, ncclFloat32, ncclSum, comm_, stream_));
    });
    return submit("barrier", op, false);
  }

  std::shared_ptr<Work> sendRecv(const void* send, size_t sendBytes, int to, void* recv,
                                 size_t recvBytes, int from, uint64_t tag) override {
    CDL_CHECK(to >= 0 && to < size_ && from >= 0 && from < size_, "sendRecv: peers ", to, " and ",
              from, " outside ", size_, " ranks");
    if (sendBytes > 0) checkDevicePointer(send, "sendRecv");
    if (recvBytes > 0) checkDevicePointer(recv, "sendRecv");
    auto op = std::make_shared<Op>();
    op->launches.push_back([this, send, sendBytes, to, recv, recvBytes, from](Op& o) {
      CDL_CUDA_CHECK(cudaStreamWaitEvent(stream_, o.ready, 0));
      grouped([&] {
        if (sendBytes > 0) CDL_NCCL_CHECK(ncclSend(send, sendBytes, ncclUint8, to, comm_, stream_));
        if (recvBytes > 0) {
          CDL_NCCL_CHECK(ncclRecv(recv, recvBytes, ncclUint8, from, comm_, stream_));
        }
      });
    });
    return submit("sendRecv of " + std::to_string(sendBytes) + " bytes to rank " +
                      std::to_string(to) + " and " + std::to_string(recvBytes) + " from rank " +
                      std::to_string(from) + " (tag " + std::to_string(tag) + ")",
                  op, true);
  }

  // Advances every op as far as its events allow; see the file comment.
  void progress() {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    progressLocked();
  }

  std::string pending(const Op& op) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (op.done) return {};
    if (op.next == 0) return "queued behind earlier collectives of this communicator";
    return "its NCCL work on device " + std::to_string(device_) +
           " has not finished; a rank may have failed or not issued it, and abort() releases "
           "the GPU";
  }

 private:
  // The memory check of memory(): data must be device (or managed) memory of this device.
  void checkDevicePointer(const void* data, const char* call) const {
    cudaPointerAttributes attr{};
    const cudaError_t rc = cudaPointerGetAttributes(&attr, data);
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      CDL_THROW(call, ": cannot tell where ", data, " lives: ", cudaGetErrorString(rc));
    }
    CDL_CHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged, call,
              " on the NCCL communicator needs a device pointer (device ", device_, "), but ", data,
              " is host memory");
    CDL_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == device_, call,
              " on the NCCL communicator of device ", device_,
              " got a pointer to memory of device ", attr.device);
  }

  std::shared_ptr<Work> submit(const std::string& what, const std::shared_ptr<Op>& op,
                               bool afterCompute) {
    std::lock_guard<std::mutex> lock(mu_);
    CDL_CHECK(!aborted_, "NCCL communicator (rank ", rank_, " of ", size_, ", device ", device_,
              ") cannot start ", what, ": it was aborted (", abortReason_,
              ") and cannot be used again");
    DeviceGuard guard(device_);
    op->what = what + " (NCCL collective #" + std::to_string(seq_++) + " on rank " +
               std::to_string(rank_) + " of " + std::to_string(size_) + ", device " +
               std::to_string(device_) + ")";
    if (afterCompute) {
      CDL_CUDA_CHECK(cudaEventCreateWithFlags(&op->ready, cudaEventDisableTiming));
      CDL_CUDA_CHECK(cudaEventRecord(op->ready, compute_));
    }
    queue_.push_back(op);
    progressLocked();
    return std::make_shared<NcclWork>(shared_from_this(), op);
  }

  void progressLocked() {
    if (aborted_) return;
    bool blocked = false;  // an earlier op still has launches to issue
    for (auto it = queue_.begin(); it != queue_.end();) {
      Op& op = **it;
      try {
        advance(op, blocked);
      } catch (...) {
        // This rank's NCCL calls are now out of step with its peers'.
        abortLocked(describe(std::current_exception()));
        return;
      }
      if (op.next < op.launches.size()) blocked = true;
      if (op.done) {
        for (const Block& b : op.pinned) pinned_.release(b);
        for (const Block& b : op.device) deviceBlocks_.release(b);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (!queue_.empty()) checkHealth();
  }

  void advance(Op& op, bool blocked) {
    while (true) {
      if (op.inFlight) {
        const cudaError_t rc = cudaEventQuery(op.event);
        if (rc == cudaErrorNotReady) return;
        CDL_CUDA_CHECK(rc);
        op.inFlight = false;
      }
      if (op.next == op.launches.size()) {
        try {
          if (op.complete) op.complete();
        } catch (...) {
          op.error = std::current_exception();
        }
        op.done.store(true, std::memory_order_release);
        return;
      }
      if (blocked) return;
      op.launches[op.next++](op);
      if (op.event == nullptr) {
        CDL_CUDA_CHECK(cudaEventCreateWithFlags(&op.event, cudaEventDisableTiming));
      }
      CDL_CUDA_CHECK(cudaEventRecord(op.event, stream_));
      op.inFlight = true;
      op.launchedAt = Clock::now();
    }
  }

  void checkHealth() {
    ncclResult_t async = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &async);
    if (rc != ncclSuccess) async = rc;
    if (async != ncclSuccess && async != ncclInProgress) {
      abortLocked(std::string("NCCL reported an asynchronous error: ") + ncclGetErrorString(async) +
                  "; " + ncclGetLastError(comm_));
      return;
    }
    const Op& oldest = *queue_.front();
    if (timeout_ > 0 && oldest.next > 0 &&
        Clock::now() - oldest.launchedAt > std::chrono::duration<double>(timeout_)) {
      abortLocked(oldest.what + " did not finish within " + ::cdl::detail::concat(timeout_) +
                  " s of being issued (CDL_COMM_TIMEOUT); a rank may have failed or skipped it");
    }
  }

  void abortLocked(const std::string& reason) {
    if (aborted_) return;
    aborted_ = true;
    abortReason_ = reason;
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    for (auto& op : queue_) {
      if (!op->done) {
        op->error = makeError(op->what + " failed: the NCCL communicator was aborted (" + reason +
                              ") and cannot be used again");
        op->done.store(true, std::memory_order_release);
      }
      orphanPinned_.insert(orphanPinned_.end(), op->pinned.begin(), op->pinned.end());
      orphanDevice_.insert(orphanDevice_.end(), op->device.begin(), op->device.end());
    }
    queue_.clear();
  }

  // A staging buffer owned by `op` until it completes.
  uint8_t* stage(Op& op, size_t bytes, bool pinned) {
    Block b = pinned ? pinned_.acquire(bytes) : deviceBlocks_.acquire(bytes);
    (pinned ? op.pinned : op.device).push_back(b);
    return b.ptr;
  }

  void toDevice(void* dst, const void* src, size_t bytes) {
    if (bytes > 0) {
      CDL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    }
  }

  void toHost(void* dst, const void* src, size_t bytes) {
    if (bytes > 0) {
      CDL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    }
  }

  template <typename F>
  void grouped(F&& body) {
    CDL_NCCL_CHECK(ncclGroupStart());
    try {
      body();
    } catch (...) {
      ncclGroupEnd();
      throw;
    }
    CDL_NCCL_CHECK(ncclGroupEnd());
  }

  const int rank_;
  const int size_;
  const int device_;
  const double timeout_;  // seconds; 0 = none
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;

  mutable std::mutex mu_;  // guards everything below and every NCCL call on comm_
  cudaStream_t compute_ = cudaStreamLegacy;
  std::deque<std::shared_ptr<Op>> queue_;  // unfinished ops, in call order
  BlockCache pinned_{true};
  BlockCache deviceBlocks_{false};
  std::vector<Block> orphanPinned_, orphanDevice_;  // of ops in flight when aborted
  bool aborted_ = false;
  std::string abortReason_;
  uint64_t seq_ = 0;
};

NcclWork::NcclWork(std::shared_ptr<NcclComm> comm, std::shared_ptr<Op> op)
    : Work(op->what), comm_(std::move(comm)), op_(std::move(op)) {}

bool NcclWork::poll() {
  if (!op_->done.load(std::memory_order_acquire)) {
    try {
      comm_->progress();
    } catch (...) {
      finish(std::current_exception());
      return true;
    }
    if (!op_->done.load(std::memory_order_acquire)) return false;
  }
  finish(op_->error);
  return true;
}

std::string NcclWork::missing() const { return comm_->pending(*op_); }

}  // namespace

std::shared_ptr<NcclCommunicator> makeNcclCommunicator(std::shared_ptr<Communicator> bootstrap,
                                                       int device) {
  CDL_CHECK(bootstrap != nullptr, "makeNcclCommunicator: null bootstrap communicator");
  int count = 0;
  CDL_CUDA_CHECK(cudaGetDeviceCount(&count));
  CDL_CHECK(device >= 0 && device < count, "makeNcclCommunicator: device ", device,
            " is not one of the ", count, " visible CUDA devices");
  // Rank 0 sends an empty id when it cannot make one, so that the others fail instead of waiting.
  ncclUniqueId id{};
  Bytes idBytes;
  std::exception_ptr idError;
  if (bootstrap->rank() == 0) {
    try {
      DeviceGuard guard(device);
      CDL_NCCL_CHECK(ncclGetUniqueId(&id));
      const auto* p = reinterpret_cast<const uint8_t*>(&id);
      idBytes.assign(p, p + sizeof(id));
    } catch (...) {
      idError = std::current_exception();
    }
  }
  bootstrap->broadcast(&idBytes, 0)->wait();
  if (idError) std::rethrow_exception(idError);
  CDL_CHECK(idBytes.size() == sizeof(id), "makeNcclCommunicator: rank 0 could not create the ",
            "NCCL unique id (received ", idBytes.size(), " bytes)");
  std::memcpy(&id, idBytes.data(), sizeof(id));
  return std::make_shared<NcclComm>(id, bootstrap->rank(), bootstrap->size(), device);
}

}  // namespace cdl::comm
