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

AllreduceStats& startStats(AllreduceStats* stats, AllreduceStats* local, int size, int64_t n) {
  AllreduceStats& st = stats ? *stats : *local;
  st = AllreduceStats{};
  st.fp32Bytes = ringAllreduceBytes(size, 4.0 * static_cast<double>(n));
  return st;
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

namespace {

// The gather path for codecs that are not summable (top-k): every rank's payload to every rank,
// summed in rank order. t0 is when encoding began; returns when the final decode began.
Clock::time_point gatherReduce(Communicator& comm, const Codec& codec, const LayerRate& rate,
                               float* x, int64_t n, const CompressedAllreduceOptions& opt,
                               Clock::time_point t0, AllreduceStats& st) {
  const int size = comm.size(), rank = comm.rank();
  Scratch& sc = scratch();
  Bytes& mine = sc.mine;
  encodeRange(codec, x, n, rate, chunkKey(opt.roundingKey, 0, rank, 0), &mine);
  if (opt.residual) updateResidual(codec, mine, x, n, opt.residual);
  st.encodeSeconds += since(t0);
  t0 = Clock::now();
  waitWork(comm.allgatherv(mine, &sc.all, &sc.sizes), opt.timeoutSeconds);
  st.commSeconds += since(t0);
  st.wireBytes += mine.size() * static_cast<uint64_t>(size - 1);
  t0 = Clock::now();
  size_t off = 0;
  for (int r = 0; r < size; ++r) {
    codec.decode(sc.all.data() + off, sc.sizes[r], x, n, /*accumulate=*/r > 0);
    off += sc.sizes[r];
  }
  return t0;
}

// The scatter-reduce + allgather path for summable codecs (Note [Compressed allreduce]). t0 is
// when encoding began; returns when the final decode began.
Clock::time_point scatterReduce(Communicator& comm, const Codec& codec, const LayerRate& rate,
                                float* x, int64_t n, const CompressedAllreduceOptions& opt,
                                Clock::time_point t0, AllreduceStats& st) {
  const int size = comm.size(), rank = comm.rank();
  Scratch& sc = scratch();
  // Chunk boundaries on multiples of the codec's alignment, so quantization buckets stay whole.
  const int64_t align = std::max<int64_t>(1, codec.chunkAlignment(rate));
  const int64_t units = (n + align - 1) / align;
  std::vector<int64_t> begin(size + 1);
  for (int r = 0; r <= size; ++r) begin[r] = std::min(n, units * r / size * align);
  auto chunkLen = [&](int r) { return begin[r + 1] - begin[r]; };

  sc.send.resize(size);
  for (int r = 0; r < size; ++r) {
    encodeRange(codec, x + begin[r], chunkLen(r), rate, chunkKey(opt.roundingKey, 1, rank, r),
                &sc.send[r]);
    if (opt.residual) {
      updateResidual(codec, sc.send[r], x + begin[r], chunkLen(r), opt.residual + begin[r]);
    }
    if (r != rank) st.wireBytes += sc.send[r].size();
  }
  st.encodeSeconds += since(t0);
  t0 = Clock::now();
  waitWork(comm.alltoallv(sc.send, &sc.recv), opt.timeoutSeconds);
  st.commSeconds += since(t0);

  t0 = Clock::now();
  float* mine = x + begin[rank];
  const int64_t myLen = chunkLen(rank);
  for (int r = 0; r < size; ++r) {
    codec.decode(sc.recv[r].data(), sc.recv[r].size(), mine, myLen, /*accumulate=*/r > 0);
  }
  st.decodeSeconds += since(t0);
  t0 = Clock::now();
  Bytes& reduced = sc.mine;
  encodeRange(codec, mine, myLen, rate, chunkKey(opt.roundingKey, 2, rank, rank), &reduced);
  st.encodeSeconds += since(t0);
  st.wireBytes += reduced.size() * static_cast<uint64_t>(size - 1);
  t0 = Clock::now();
  waitWork(comm.allgatherv(reduced, &sc.all, &sc.sizes), opt.timeoutSeconds);
  st.commSeconds += since(t0);
  t0 = Clock::now();
  size_t off = 0;
  for (int r = 0; r < size; ++r) {
    codec.decode(sc.all.data() + off, sc.sizes[r], x + begin[r], chunkLen(r),
                 /*accumulate=*/false);
    off += sc.sizes[r];
  }
  return t0;
}

}  // namespace

void compressedAllreduce(Communicator& comm, const Codec& codec, const LayerRate& rate, float* x,
                         int64_t n, const CompressedAllreduceOptions& opt, AllreduceStats* stats) {
  CDL_CHECK(n >= 0 && (x != nullptr || n == 0), "compressed allreduce: bad buffer (n = ", n, ")");
  AllreduceStats local;
  AllreduceStats& st = startStats(stats, &local, comm.size(), n);
  const int size = comm.size();

  auto t0 = Clock::now();
  if (opt.residual) {
    for (int64_t i = 0; i < n; ++i) x[i] += opt.residual[i];
  }
  if (codec.lossless()) {
    // Lossless: the communicator's own fp32 allreduce, and nothing left for the residual.
    if (opt.residual) std::fill_n(opt.residual, n, 0.0f);
    st.encodeSeconds += since(t0);
    fp32Allreduce(comm, x, n, opt.average, opt.timeoutSeconds, &st);
    return;
  }
  t0 = codec.summable() ? scatterReduce(comm, codec, rate, x, n, opt, t0, st)
                        : gatherReduce(comm, codec, rate, x, n, opt, t0, st);
  if (opt.average && size > 1) {
    const float inv = 1.0f / static_cast<float>(size);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  }
  st.decodeSeconds += since(t0);
}

}  // namespace cdl::comm
