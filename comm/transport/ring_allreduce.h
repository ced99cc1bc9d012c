#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "comm/transport/communicator.h"

namespace cdl::comm {

// Note [Ring allreduce]
// An fp32 allreduce as a ring over the point-to-point seam (Communicator::sendRecv): p - 1
// reduce-scatter steps, in which each rank sends one of p chunks to its right neighbour and adds
// the chunk arriving from its left one, then p - 1 allgather steps passing the finished chunks
// on. Each rank sends and receives 2 (p - 1) / p of the buffer, every link busy at once. Chunk c
// is summed in ring order starting at rank c, so every rank ends with the same bits. Each step is
// one phase of the returned Work, advanced as the Work is polled (wait() or completed()).
// Measured with cdl-bench allreduce against MPI_Allreduce (Open MPI 4.1): 1.2-1.9x on 3-4 local
// ranks from 1 MiB on, 1.75x on 4 nodes with 100mbit links; on two ranks the ring is no faster
// (0.8-1.2x locally, 0.9x on 100mbit), so the transports keep their own allreduce there.
//
// Sums data[0..n) (host memory) over comm's ranks; every rank calls it with the same n and tag.
// `what` names the collective in errors.
std::shared_ptr<Work> ringAllreduce(Communicator& comm, float* data, int64_t n, uint64_t tag,
                                    const std::string& what);

// Whether a host transport with these options runs an allreduce of n floats over size ranks as
// the ring (kMeasuredRingMin reads as kDefaultRingMinFloats): every rank decides alike.
bool useRing(const CollectiveOptions& options, int size, int64_t n);

// Note [Allreduce choice]
// Which fp32 allreduce is faster at a size depends on the network and the machine: Open MPI's own
// nonblocking allreduce has few steps but moves whole buffers and progresses only when polled,
// the ring has 2 (p - 1) steps of 1/p of the buffer each and is bandwidth-optimal. So the MPI
// transport, unless told a fixed threshold, measures: at its first allreduce of at least
// kRingProbeFloats floats over three or more ranks, it times both algorithms on scratch buffers of
// kRingProbeFloats and 8 times as many floats (the best of 3 runs each, after one to open the
// connections), takes every time as the slowest rank's (so every rank decides alike), fits
// time = latency + floats / rate to each algorithm and runs the ring from where its line falls
// below the other's (ringCrossover). Smaller allreduces before that stay on Open MPI's. The
// measurement costs 16 allreduces of at most 2 MiB, once per communicator; allreduceChoice()
// reports it. CDL_ALLREDUCE=ring or mpi (kernels/base/knobs.h) takes one of the two at every size
// without measuring, for runs that must not depend on a measurement (the ring-reset fault test).
inline constexpr int64_t kRingProbeFloats = int64_t{1} << 16;

// The size from which the ring is the faster of two algorithms measured as (n1, t1) and (n2, t2)
// floats and seconds each (transport first, then ring), at least 1, or INT64_MAX for never: where
// the ring's line crosses below the transport's when it is the less steep (extrapolated past n2
// too; below n1 a transport line that would reach zero time is replaced by the proportional one
// through (n1, t1)); when it is as steep or steeper, 1 if it is the faster at n2, else never.
int64_t ringCrossover(int64_t n1, int64_t n2, double transport1, double transport2, double ring1,
                      double ring2);

}  // namespace cdl::comm
