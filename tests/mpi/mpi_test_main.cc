// main() for tests run under mpirun: MPI is initialized around the GoogleTest run, only rank 0
// prints the test progress, and every rank's failures are reported with its rank.
#include <gtest/gtest.h>

#include "comm/transport/mpi/mpi_communicator.h"

int main(int argc, char** argv) {
  cdl::comm::initMpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  // A failure on any rank fails the job.
  int anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (anyFailed && failed) std::fprintf(stderr, "rank %d: tests failed\n", rank);
  cdl::comm::finalizeMpi();
  return anyFailed ? 1 : 0;
}
