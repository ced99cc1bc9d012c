#include "comm/reduce/compressed_allreduce.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::comm {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The rounding stream of one encoding: distinct per (stage, rank, chunk) within a collective.
uint64_t chunkKey(uint64_t key, uint64_t stage, uint64_t rank, uint64_t chunk) {
  return kernels::mix64(key ^ kernels::mix64((stage << 56) ^ (rank << 28) ^ chunk));
}

void encodeRange(const Codec& codec, const float* x, int64_t n, const LayerRate& rate, uint64_t key,
                 Bytes* p) {
  p->resize(codec.maxEncodedBytes(n, rate));
  p->resize(codec.encode(x, n, rate, key, p->data(), p->size()));
}

// The buffers of one thread's compressed allreduces, kept between calls: reusing their capacity
// spares the page faults of fresh multi-megabyte allocations on every bucket.
struct Scratch {
  std::vector<Bytes> send, recv;
  Bytes mine, all;
  std::vector<size_t> sizes;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// residual[0..n) = x[0..n) - decode(payload).
void updateResidual(const Codec& codec, const Bytes& payload, const float* x, int64_t n,
                    float* residual) {
  codec.decode(payload.data(), payload.size(), residual, n, /*accumulate=*/false);
  for (int64_t i = 0; i < n; ++i) residual[i] = x[i] - residual[i];
}

}  // namespace

uint64_t ringAllreduceBytes(int size, double bytes) {
  return static_cast<uint64_t>(2.0 * (size - 1) / size * bytes);
}

void waitWork(const std::shared_ptr<Work>& w, double timeoutSeconds) {
  if (timeoutSeconds > 0.0) {
    w->wait(std::chrono::duration<double>(timeoutSeconds));
  } else {
    w->wait();
  }
}

void fp32Allreduce(Communicator& comm, float* x, int64_t n, bool average, double timeoutSeconds,
                   AllreduceStats* stats) {
  auto t0 = Clock::now();
  waitWork(comm.allreduce(x, n), timeoutSeconds);
  stats->commSeconds += since(t0);
  stats->wireBytes = ringAllreduceBytes(comm.size(), 4.0 * static_cast<double>(n));
  t0 = Clock::now();
  if (average && comm.size() > 1) {
    const float inv = 1.0f / static_cast<float>(comm.size());
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  }
  stats->decodeSeconds += since(t0);
}

void compressedAllreduce(Communicator& comm, const Codec& codec, const LayerRate& rate, float* x,
                         int64_t n, const CompressedAllreduceOptions& opt, AllreduceStats* stats) {
  CDL_CHECK(n >= 0 && (x != nullptr || n == 0), "compressed allreduce: bad buffer (n = ", n, ")");
  AllreduceStats local;
  AllreduceStats& st = stats ? *stats : local;
  st = AllreduceStats{};
  const int size = comm.size(), rank = comm.rank();
  st.fp32Bytes = ringAllreduceBytes(size, 4.0 * static_cast<double>(n));

  auto t0 = Clock::now();
  if (opt.residual) {
    for (int64_t i = 0; i < n; ++i) x[i] += opt.residual[i];
  }
  Scratch& sc = scratch();

  if (codec.lossless()) {
    // Lossless: the communicator's own fp32 allreduce, and nothing left for the residual.
    if (opt.residual) std::fill_n(opt.residual, n, 0.0f);
    st.encodeSeconds += since(t0);
    fp32Allreduce(comm, x, n, opt.average, opt.timeoutSeconds, &st);
    return;
  }

  if (!codec.summable()) {
    Bytes& mine = sc.mine;
    encodeRange(codec, x, n, rate, chunkKey(opt.roundingKey, 0, rank, 0), &mine);
    if (opt.residual) updateResidual(codec, mine, x, n, opt.residual);
    st.encodeSeconds += since(t0);
    t0 = Clock::now();
    Bytes& all = sc.all;
    std::vector<size_t>& sizes = sc.sizes;
    waitWork(comm.allgatherv(mine, &all, &sizes), opt.timeoutSeconds);
    st.commSeconds += since(t0);
    st.wireBytes += mine.size() * static_cast<uint64_t>(size - 1);
    t0 = Clock::now();
    size_t off = 0;
    for (int r = 0; r < size; ++r) {
      codec.decode(all.data() + off, sizes[r], x, n, /*accumulate=*/r > 0);
      off += sizes[r];
    }
  } else {
    // Chunk boundaries on multiples of the bucket, so quantization buckets stay whole.
    const int64_t align = std::max<int64_t>(1, codec.chunkAlignment(rate));
    const int64_t units = (n + align - 1) / align;
    std::vector<int64_t> begin(size + 1);
    for (int r = 0; r <= size; ++r) begin[r] = std::min(n, units * r / size * align);
    auto chunkLen = [&](int r) { return begin[r + 1] - begin[r]; };

    std::vector<Bytes>& send = sc.send;
    send.resize(size);
    for (int r = 0; r < size; ++r) {
      encodeRange(codec, x + begin[r], chunkLen(r), rate, chunkKey(opt.roundingKey, 1, rank, r),
                  &send[r]);
      if (opt.residual) {
        updateResidual(codec, send[r], x + begin[r], chunkLen(r), opt.residual + begin[r]);
      }
      if (r != rank) st.wireBytes += send[r].size();
    }
    st.encodeSeconds += since(t0);
    t0 = Clock::now();
    std::vector<Bytes>& recv = sc.recv;
    waitWork(comm.alltoallv(send, &recv), opt.timeoutSeconds);
    st.commSeconds += since(t0);

    t0 = Clock::now();
    float* mine = x + begin[rank];
    const int64_t myLen = chunkLen(rank);
    for (int r = 0; r < size; ++r) {
      codec.decode(recv[r].data(), recv[r].size(), mine, myLen, /*accumulate=*/r > 0);
    }
    st.decodeSeconds += since(t0);
    t0 = Clock::now();
    Bytes& reduced = sc.mine;
    encodeRange(codec, mine, myLen, rate, chunkKey(opt.roundingKey, 2, rank, rank), &reduced);
    st.encodeSeconds += since(t0);
    st.wireBytes += reduced.size() * static_cast<uint64_t>(size - 1);
    t0 = Clock::now();
    Bytes& all = sc.all;
    std::vector<size_t>& sizes = sc.sizes;
    waitWork(comm.allgatherv(reduced, &all, &sizes), opt.timeoutSeconds);
    st.commSeconds += since(t0);
    t0 = Clock::now();
    size_t off = 0;
    for (int r = 0; r < size; ++r) {
      codec.decode(all.data() + off, sizes[r], x + begin[r], chunkLen(r), /*accumulate=*/false);
      off += sizes[r];
    }
  }
  if (opt.average && size > 1) {
    const float inv = 1.0f / static_cast<float>(size);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  }
  st.decodeSeconds += since(t0);
}

}  // namespace cdl::comm
