// Under `mpirun -np 2`: an MPI operation abandoned by a timeout fences MPI in its process (Note
// [Abandoned MPI operations]). Rank 1 skips the first allreduce and joins an allreduce later, as
// a rank that stalled and came back would. Rank 0 times out on the first allreduce, naming rank 1
// as the rank that has not issued it, and frees its buffer; its next allreduce must then fail at
// once naming the abandoned one, not be matched with rank 1's late call (which MPI pairs with the
// abandoned one, writing into the freed buffer and leaving the new one to time out). Every other
// MPI entry point fails the same way, and finalizeMpi() ends the job instead of waiting for the
// abandoned requests. Rank 0 prints "abandon_check: ok" once every check has passed; CTest looks
// for that line.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "comm/transport/mpi/mpi_communicator.h"
#include "comm/transport/work.h"
#include "kernels/base/error.h"
#include "tests/support/error_of.h"

namespace {

using cdl::comm::Communicator;
using Seconds = std::chrono::duration<double>;

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "abandon_check: FAILED: %s\n", what.c_str());
    ++failures;
  }
}

using cdl::test::errorOf;

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void rank0(Communicator& comm) {
  {
    std::vector<float> first(1 << 16, 1.0f);
    auto work = comm.allreduce(first.data(), static_cast<int64_t>(first.size()));
    const auto start = std::chrono::steady_clock::now();
    const std::string timeout = errorOf([&] { work->wait(Seconds(1.0)); });
    expect(has(timeout, "allreduce of 65536 floats") && has(timeout, "did not complete within"),
           "the first allreduce timed out, named: " + timeout);
    // Rank 1 is alive but has not issued it (Note [Peer status]).
    expect(
        has(timeout, "waiting for rank 1: it has not issued it; it has issued no collective yet"),
        "the timeout names rank 1 as not having issued the allreduce: " + timeout);
    expect(Seconds(std::chrono::steady_clock::now() - start).count() < 30, "the timeout held");
    expect(cdl::comm::mpiFenced(), "a timed-out MPI operation fences MPI");
  }  // `first` and the Work go; rank 1 now joins what MPI still holds for them
  std::this_thread::sleep_for(std::chrono::seconds(2));

  std::vector<float> second(4, 2.0f);
  const auto start = std::chrono::steady_clock::now();
  const std::string fenced =
      errorOf([&] { comm.allreduce(second.data(), 4)->wait(Seconds(20.0)); });
  expect(has(fenced, "MPI can no longer be used") && has(fenced, "allreduce of 65536 floats"),
         "the next allreduce names the abandoned one: " + fenced);
  expect(Seconds(std::chrono::steady_clock::now() - start).count() < 5,
         "the next allreduce failed at once");
  expect(second == std::vector<float>(4, 2.0f), "the fenced allreduce left its buffer alone");

  std::vector<uint8_t> in(8), out(8);
  const std::string p2p =
      errorOf([&] { comm.sendRecv(out.data(), 8, 1, in.data(), 8, 1, 7)->wait(Seconds(5.0)); });
  expect(has(p2p, "MPI can no longer be used"), "sendRecv is fenced: " + p2p);
  const std::string barrier = errorOf([&] { comm.barrier()->wait(Seconds(5.0)); });
  expect(has(barrier, "MPI can no longer be used"), "barrier is fenced: " + barrier);
  const std::string dup = errorOf([] { cdl::comm::makeMpiCommunicator(); });
  expect(has(dup, "MPI can no longer be used"), "new communicators are fenced: " + dup);

  if (failures == 0) std::printf("abandon_check: ok\n");
  std::fflush(stdout);
}

void rank1(Communicator& comm) {
  // Skips rank 0's first allreduce, comes back after rank 0 gave up on it.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::vector<float> late(1 << 16, 5.0f);
  errorOf(
      [&] { comm.allreduce(late.data(), static_cast<int64_t>(late.size()))->wait(Seconds(60)); });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    cdl::comm::initMpi(&argc, &argv);
    auto comm = cdl::comm::makeMpiCommunicator();
    if (comm->size() != 2) {
      std::fprintf(stderr, "abandon_check: run with mpirun -np 2\n");
      cdl::comm::abortMpi(1);
    }
    if (comm->rank() == 0) {
      rank0(*comm);
    } else {
      rank1(*comm);
    }
    comm.reset();
    // Rank 0 is fenced: this ends the job (rank 1 still waits) instead of hanging.
    cdl::comm::finalizeMpi();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "abandon_check: %s\n", e.what());
    cdl::comm::abortMpi(1);
  }
  return 1;  // finalizeMpi returned: rank 0 was not fenced, or rank 1 got past a fenced peer
}
