#include "comm/reduce/compressed_allreduce.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "comm/reduce/compressed_chunks.h"
#include "kernels/base/clock.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

// The buffers of one thread's compressed allreduces, kept between calls: reusing their capacity
// spares the page faults of fresh multi-megabyte allocations on every bucket.
struct Scratch {
  Bytes mine, all;
  std::vector<size_t> sizes;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
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
  stats->commSeconds += secondsSince(t0);
  stats->wireBytes = ringAllreduceBytes(comm.size(), 4.0 * static_cast<double>(n));
  t0 = Clock::now();
  if (average) averageOverRanks(x, n, comm.size());
  stats->decodeSeconds += secondsSince(t0);
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
  encodeRange(codec, x, n, rate, chunkKey(opt.roundingKey, ChunkStage::kGather, rank, 0), &mine,
              opt.residual);
  st.encodeSeconds += secondsSince(t0);
  t0 = Clock::now();
  waitWork(comm.allgatherv(mine, &sc.all, &sc.sizes), opt.timeoutSeconds);
  st.commSeconds += secondsSince(t0);
  st.wireBytes += mine.size() * static_cast<uint64_t>(size - 1);
  t0 = Clock::now();
  std::vector<const uint8_t*> payloads(size);
  size_t off = 0;
  for (int r = 0; r < size; ++r) payloads[r] = sc.all.data() + off, off += sc.sizes[r];
  decodeSum(codec, payloads.data(), sc.sizes.data(), size, x, n);
  return t0;
}

// One segment of a pipelined scatter-reduce (Note [Pipelined scatter-reduce]): its elements'
// chunk per rank and the buffers its collectives use while in flight.
struct Segment {
  std::vector<int64_t> begin;  // begin[r]..begin[r + 1]: rank r's chunk, in elements of x
  std::vector<Bytes> send, recv;
  Bytes reduced, all;
  std::vector<size_t> sizes;
  std::shared_ptr<Work> exchange, gather;  // the alltoallv and the allgatherv in flight
};

// The buffers of one thread's pipelines, kept between calls as Scratch is.
std::vector<Segment>& segmentSlots() {
  thread_local std::vector<Segment> slots(3);
  return slots;
}

// Polls every operation in flight, so that MPI's progress goes on while this thread computes.
void progress(const std::vector<Segment>& slots) {
  for (const Segment& g : slots) {
    if (g.exchange) g.exchange->completed();
    if (g.gather) g.gather->completed();
  }
}

// One pipelined scatter-reduce (Note [Pipelined scatter-reduce]): x's segments, each through the
// three phases below, with at most three segments' buffers in flight (segmentSlots).
class SegmentedScatterReduce {
 public:
  SegmentedScatterReduce(Communicator& comm, const Codec& codec, const LayerRate& rate, float* x,
                         int64_t n, const CompressedAllreduceOptions& opt, AllreduceStats& st)
      : comm_(comm),
        codec_(codec),
        rate_(rate),
        x_(x),
        n_(n),
        opt_(opt),
        st_(st),
        size_(comm.size()),
        rank_(comm.rank()),
        slots_(segmentSlots()) {
    // Chunk boundaries on multiples of the codec's alignment, so quantization buckets stay whole.
    align_ = chunkAlign(codec, rate);
    units_ = (n + align_ - 1) / align_;
    segUnits_ = opt.segmentBytes > 0 ? std::max<int64_t>(1, opt.segmentBytes / 4 / align_) : units_;
    segments_ = std::max<int64_t>(1, (units_ + segUnits_ - 1) / segUnits_);
  }
  // Operations still in flight when run() throws are let go while their buffers live: a
  // transport that cannot take them back fences itself (Work::abandon()).
  ~SegmentedScatterReduce() {
    for (Segment& g : slots_) g.exchange.reset(), g.gather.reset();
  }

  // Every rank issues the collectives in this one order: alltoallv 0, then for each k >= 1
  // alltoallv k and allgatherv k - 1. Returns when the final decode began.
  Clock::time_point run(Clock::time_point t0) {
    lastDecode_ = t0;
    encodeSegment(0);
    for (int64_t k = 1; k < segments_; ++k) {
      encodeSegment(k);
      reduceSegment(k - 1);
      if (k >= 2) finishSegment(k - 2);
    }
    reduceSegment(segments_ - 1);
    if (segments_ >= 2) finishSegment(segments_ - 2);
    finishSegment(segments_ - 1);
    return lastDecode_;
  }

 private:
  Segment& slot(int64_t k) { return slots_[static_cast<size_t>(k % 3)]; }

  // A: encode segment k's chunk for each rank (and the residual), and start its alltoallv.
  void encodeSegment(int64_t k) {
    Segment& g = slot(k);
    const int64_t u0 = k * segUnits_, u1 = std::min(units_, u0 + segUnits_);
    chunkBegins(n_, align_, u0, u1, size_, &g.begin);
    g.send.resize(size_);
    const auto t = Clock::now();
    for (int r = 0; r < size_; ++r) {
      const int64_t len = g.begin[r + 1] - g.begin[r];
      encodeRange(codec_, x_ + g.begin[r], len, rate_,
                  chunkKey(opt_.roundingKey, ChunkStage::kScatter, rank_,
                           static_cast<uint64_t>(k * size_ + r)),
                  &g.send[r], opt_.residual ? opt_.residual + g.begin[r] : nullptr);
      if (r != rank_) st_.wireBytes += g.send[r].size();
      progress(slots_);
    }
    st_.encodeSeconds += secondsSince(t);
    g.exchange = comm_.alltoallv(g.send, &g.recv);
  }

  // B: once segment k's alltoallv is in, sum this rank's chunk, re-encode it, start its allgatherv.
  void reduceSegment(int64_t k) {
    Segment& g = slot(k);
    auto t = Clock::now();
    waitWork(g.exchange, opt_.timeoutSeconds);
    g.exchange.reset();
    st_.commSeconds += secondsSince(t);
    t = Clock::now();
    float* mine = x_ + g.begin[rank_];
    const int64_t myLen = g.begin[rank_ + 1] - g.begin[rank_];
    std::vector<const uint8_t*> payloads(size_);
    std::vector<size_t> sizes(size_);
    for (int r = 0; r < size_; ++r) payloads[r] = g.recv[r].data(), sizes[r] = g.recv[r].size();
    decodeSum(codec_, payloads.data(), sizes.data(), size_, mine, myLen);
    st_.decodeSeconds += secondsSince(t);
    progress(slots_);
    t = Clock::now();
    encodeRange(codec_, mine, myLen, rate_,
                chunkKey(opt_.roundingKey, ChunkStage::kReduce, rank_,
                         static_cast<uint64_t>(k * size_ + rank_)),
                &g.reduced);
    st_.encodeSeconds += secondsSince(t);
    st_.wireBytes += g.reduced.size() * static_cast<uint64_t>(size_ - 1);
    g.gather = comm_.allgatherv(g.reduced, &g.all, &g.sizes);
  }

  // C: once segment k's allgatherv is in, decode every rank's reduced chunk into x.
  void finishSegment(int64_t k) {
    Segment& g = slot(k);
    const auto t = Clock::now();
    waitWork(g.gather, opt_.timeoutSeconds);
    g.gather.reset();
    st_.commSeconds += secondsSince(t);
    lastDecode_ = Clock::now();
    size_t off = 0;
    for (int r = 0; r < size_; ++r) {
      codec_.decode(g.all.data() + off, g.sizes[r], x_ + g.begin[r], g.begin[r + 1] - g.begin[r],
                    /*accumulate=*/false);
      off += g.sizes[r];
      progress(slots_);
    }
    if (k + 1 < segments_) st_.decodeSeconds += secondsSince(lastDecode_);
  }

  Communicator& comm_;
  const Codec& codec_;
  const LayerRate& rate_;
  float* x_;
  int64_t n_;
  const CompressedAllreduceOptions& opt_;
  AllreduceStats& st_;
  int size_, rank_;
  std::vector<Segment>& slots_;
  int64_t align_ = 1, units_ = 0, segUnits_ = 0, segments_ = 1;
  Clock::time_point lastDecode_;
};

// The scatter-reduce + allgather path for summable codecs (Note [Compressed allreduce]), in
// segments (Note [Pipelined scatter-reduce]). t0 is when encoding began; returns when the final
// decode began.
Clock::time_point scatterReduce(Communicator& comm, const Codec& codec, const LayerRate& rate,
                                float* x, int64_t n, const CompressedAllreduceOptions& opt,
                                Clock::time_point t0, AllreduceStats& st) {
  SegmentedScatterReduce segmented(comm, codec, rate, x, n, opt, st);
  st.encodeSeconds += secondsSince(t0);  // the residual's addition
  return segmented.run(t0);
}

}  // namespace

void compressedAllreduce(Communicator& comm, const Codec& codec, const LayerRate& rate, float* x,
                         int64_t n, const CompressedAllreduceOptions& opt, AllreduceStats* stats) {
  CDL_CHECK(n >= 0 && (x != nullptr || n == 0), "compressed allreduce: bad buffer (n = ", n, ")");
  AllreduceStats local;
  AllreduceStats& st = startStats(stats, &local, comm.size(), n);
  const int size = comm.size();

  auto t0 = Clock::now();
  if (opt.residual) addResidual(x, opt.residual, n);
  if (codec.lossless()) {
    // Lossless: the communicator's own fp32 allreduce, and nothing left for the residual.
    if (opt.residual) std::fill_n(opt.residual, n, 0.0f);
    st.encodeSeconds += secondsSince(t0);
    fp32Allreduce(comm, x, n, opt.average, opt.timeoutSeconds, &st);
    return;
  }
  t0 = codec.summable() ? scatterReduce(comm, codec, rate, x, n, opt, t0, st)
                        : gatherReduce(comm, codec, rate, x, n, opt, t0, st);
  if (opt.average) averageOverRanks(x, n, size);
  st.decodeSeconds += secondsSince(t0);
}

}  // namespace cdl::comm
