#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "comm/transport/communicator.h"

namespace cdl::comm {

// Note [NCCL communicator]
// A Communicator over NCCL, one rank per GPU (NCCL cannot put two ranks on one device).
//
// - allreduce(data, n) takes a DEVICE pointer: `data` must point to n floats in memory of this
//   communicator's device (cudaMalloc or managed memory). A host pointer is rejected with an error.
//   The reduction runs on the communicator's own non-blocking stream, after the work that was
//   queued on the compute stream (setComputeStream; the legacy default stream unless set) when
//   allreduce was called. Once wait() returns, the result is visible to every stream and the host.
// - sendRecv (the point-to-point seam) also takes device pointers; its two halves are one NCCL
//   group, so a ring of them cannot deadlock. NCCL has no tags: the messages between two ranks
//   match in issue order, and a receive must name exactly the sender's byte count (NCCL does not
//   check it). memory() is kDevice.
// - allgatherv, alltoallv and broadcast move host Bytes, as on every Communicator: they are staged
//   through pinned host and device buffers, first exchanging the sizes, then the bytes.
// - barrier() completes once every rank has joined it (an allreduce of one float).
// - Every call returns at once. NCCL work is issued in call order on every rank; a collective whose
//   second step needs the sizes from its first is finished by wait()/completed() on any of this
//   communicator's Works, and later calls queue behind it. Works complete by polling CUDA events,
//   so wait(timeout) times out with an error naming the collective instead of hanging.
// - A collective that stays unfinished for CDL_COMM_TIMEOUT seconds after its GPU work was issued,
//   or an asynchronous NCCL error, aborts the NCCL communicator (ncclCommAbort): every Work in
//   flight fails, and every later call throws cdl::Error saying why. So does abort().
// - The constructor blocks until every rank of `bootstrap` has joined (ncclCommInitRank).
// A communicator may be used from several threads; calls are serialized internally.
class NcclCommunicator : public Communicator {
 public:
  // The CUDA device this rank's collectives run on.
  virtual int device() const = 0;
  // The non-blocking stream NCCL work is issued on.
  virtual cudaStream_t stream() const = 0;
  // Later allreduce calls start after the work queued on `stream` at their call time.
  virtual void setComputeStream(cudaStream_t stream) = 0;
  // Aborts the NCCL communicator: Works in flight fail and later calls throw with `reason`.
  // Releases a GPU stuck in a collective a peer never joined (for example after wait() timed out).
  virtual void abort(const std::string& reason) = 0;
  // Whether the communicator was aborted and can no longer be used.
  virtual bool aborted() const = 0;
};

// Creates the NCCL communicator of this rank of `bootstrap` (which has the same ranks: MPI in a
// job, an in-process group in tests) on CUDA device `device`. Rank 0 creates the NCCL unique id
// and broadcasts it over `bootstrap`; every rank of `bootstrap` must call this together.
std::shared_ptr<NcclCommunicator> makeNcclCommunicator(std::shared_ptr<Communicator> bootstrap,
                                                       int device);

}  // namespace cdl::comm
