#pragma once

#include <cstdint>

#include "comm/codec/codec.h"
#include "comm/transport/communicator.h"

namespace cdl::comm {

// What one compressed allreduce cost this rank.
struct AllreduceStats {
  uint64_t wireBytes = 0;      // payload bytes this rank sent to other ranks
  uint64_t fp32Bytes = 0;      // what a ring allreduce of fp32 would send: 2 (W-1)/W * 4n
  double encodeSeconds = 0.0;  // encoding and error-feedback bookkeeping
  double commSeconds = 0.0;    // waiting on collectives
  double decodeSeconds = 0.0;  // decoding and summing
};

// The default pipeline segment of the compressed allreduce: 4 MiB of fp32.
inline constexpr int64_t kDefaultSegmentBytes = int64_t{4} << 20;

struct CompressedAllreduceOptions {
  bool average = true;  // divide the sum by the number of ranks
  // The error-feedback residual of this tensor (n floats) or null. When set, x + residual is
  // compressed, and the residual becomes what this rank's first encoding lost.
  float* residual = nullptr;
  // Upper bound on how long each collective may take; zero or less: CDL_COMM_TIMEOUT.
  double timeoutSeconds = 0.0;
  // The stream of stochastic rounding, e.g. kernels::roundingKey(seed, step, bucket); the same on
  // every rank.
  uint64_t roundingKey = 0;
  // Summable codecs: the fp32 bytes of x per pipeline segment (Note [Pipelined scatter-reduce]);
  // zero or less: one segment.
  int64_t segmentBytes = kDefaultSegmentBytes;
};

// What a ring allreduce of `bytes` sends from each of `size` ranks: 2 (W-1)/W * bytes.
uint64_t ringAllreduceBytes(int size, double bytes);

// The statistics an allreduce of n floats over `size` ranks fills in: *stats, or *local when stats
// is null, reset and with fp32Bytes set to what a ring allreduce of fp32 would send.
AllreduceStats& startStats(AllreduceStats* stats, AllreduceStats* local, int size, int64_t n);

// w->wait() bounded by timeoutSeconds; zero or less: the Work's default (CDL_COMM_TIMEOUT).
void waitWork(const std::shared_ptr<Work>& w, double timeoutSeconds);

// The uncompressed path: sums x[0..n) over comm with its fp32 allreduce and divides by the number
// of ranks when average is set. Adds the time to stats' comm and decode seconds and sets its
// wireBytes to what the ring sends.
void fp32Allreduce(Communicator& comm, float* x, int64_t n, bool average, double timeoutSeconds,
                   AllreduceStats* stats);

// Note [Compressed allreduce]
// Summable codecs (quantizers) run scatter-reduce + allgather: x is cut into W chunks (W ranks;
// boundaries on multiples of the codec's chunk alignment, qsgd's bucket, so no bucket straddles
// two chunks), rank r
// encodes chunk j for rank j, alltoallv moves the payloads, rank j decodes and sums its chunk's W
// payloads in rank order, re-encodes the sum and allgathervs it; every rank, the owner too,
// decodes the same bytes, so all replicas end bit-identical. Gather-only codecs (top-k) allgatherv
// one payload per rank and every rank sums all of them in rank order. Stochastic rounding keys
// differ per (rank, chunk, stage), derived from opt.roundingKey. A lossless codec (none) is the
// communicator's own fp32 allreduce, without payloads. What the algorithm needs of the codec it
// asks it (summable, lossless, chunkAlignment), never which codec it is. Each calling thread keeps
// its payload buffers for the next call (their capacity is the largest bucket it has reduced). Must
// be called by every rank of comm with the same n, codec and rate, from one thread per rank.
//
// Note [Pipelined scatter-reduce]
// A summable codec's x goes in segments of opt.segmentBytes (whole alignment units), each a
// scatter-reduce + allgather of its own, software-pipelined on the calling thread: while segment
// k is encoded, segment k-1's alltoallv and segment k-2's allgatherv are in flight, and the
// thread polls them between chunks (MPI's nonblocking operations progress only when polled), so
// the time tends to the largest of encoding, the wire and decoding instead of their sum. Every
// rank issues the collectives in one order: alltoallv 0, then for k = 1, 2, ... alltoallv k and
// allgatherv k-1, and allgatherv of the last. Chunks within a segment split it among the ranks as
// a whole buffer is split, so with nearest rounding the result does not depend on the segment
// size (a codec's alignment unit, qsgd's bucket, is quantized alone whichever segment holds it);
// stochastic rounding keys are per segment and chunk. Three segments' buffers are kept per thread.
void compressedAllreduce(Communicator& comm, const Codec& codec, const LayerRate& rate, float* x,
                         int64_t n, const CompressedAllreduceOptions& opt = {},
                         AllreduceStats* stats = nullptr);

}  // namespace cdl::comm
