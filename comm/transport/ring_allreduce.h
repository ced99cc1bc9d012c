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
// the ring: every rank decides alike.
bool useRing(const CollectiveOptions& options, int size, int64_t n);

}  // namespace cdl::comm
