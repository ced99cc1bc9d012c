#pragma once

#include <mpi.h>

#include <memory>

#include "comm/transport/communicator.h"

namespace cdl::comm {

// Initializes MPI with MPI_THREAD_MULTIPLE (cdl's communication thread and the waiting thread may
// both call MPI) and records the rank for error messages. Throws cdl::Error when the library
// provides a lower thread level. Idempotent; finalizeMpi() at exit.
void initMpi(int* argc, char*** argv);
void finalizeMpi();
// Ends every process of the job with this exit code (MPI_Abort), for a rank that failed while its
// peers may wait in a collective; a no-op when MPI is not initialized. MPI_Abort waits for the
// process's MPI daemon, which may be cut off (a link down): this process ends within 1 s all the
// same, and the launcher ends the rest (Note [A job that does not end], launcher/launch.h).
void abortMpi(int code);
// Whether an MPI operation was abandoned in this process, so that MPI is no longer entered
// (Note [Abandoned MPI operations], mpi_communicator.cc).
bool mpiFenced();

// A Communicator over an MPI communicator (MPI_COMM_WORLD by default), built from non-blocking
// collectives so that Work::wait can time out. Variable-size exchanges first exchange the sizes.
// Large allreduces over three ranks or more run as the ring (Note [Ring allreduce]).
std::shared_ptr<Communicator> makeMpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD,
                                                  const CollectiveOptions& options = {});

}  // namespace cdl::comm
