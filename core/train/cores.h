#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/transport/communicator.h"

namespace cdl::core {

// Note [Thread defaults]
// With train.threads 0, each rank takes as many intra-op threads as it has cores of its own: the
// CPUs of its affinity mask (which containers' cpusets and SLURM's or mpirun's CPU binding
// narrow), divided among the ranks of the job that run on the same machine with a mask that
// overlaps its own. "The same machine" is the kernel's boot id, which network namespaces and
// containers of one host share, so the emulated cluster's "nodes" (cdl-emulate), or containers
// on one host, split its cores instead of each believing it owns them all. Ranks bound to cores
// of their own (SLURM's --cpu-bind, mpirun --bind-to core) keep those cores.

// Where one rank runs: its machine and the CPUs it may run on.
struct Placement {
  std::string machine;        // the boot id (else the host name)
  std::vector<uint8_t> cpus;  // the affinity mask, one bit per CPU
};

// This process's placement.
Placement thisPlacement();

// The CPUs of a mask.
int cpuCount(const std::vector<uint8_t>& cpus);

// The intra-op threads for rank `rank` of the job whose ranks run at `all`: its CPUs divided by
// the ranks (itself included) on its machine whose masks overlap its own; at least 1.
int defaultThreads(const std::vector<Placement>& all, int rank);

// Collective over every rank of the job: every rank's placement, in rank order.
std::vector<Placement> allPlacements(comm::Communicator& world);

// A rank's place among the ranks on its machine (the same machine id), in rank order.
struct LocalRank {
  int index = 0;  // 0 for the machine's lowest rank
  int count = 0;  // ranks on the machine
};
LocalRank localRankOf(const std::vector<Placement>& all, int rank);

// Collective over every rank of the job: each rank's defaultThreads; `why` (if given) gets a
// line saying how the count came about, for the log.
int defaultThreads(comm::Communicator& world, std::string* why = nullptr);

// Note [Training heap]
// A training step allocates and frees the same large tensors every step (activations, their
// gradients, the quantizers' outputs). glibc hands large freed blocks back to the kernel
// (munmap, or a trim of the heap's top) and maps them again at the next step, paying a page
// fault and a zeroed page per 4 KiB each time: a fifth of the CNN's step on this project's
// 2-core machine. A training process therefore raises glibc's mmap and trim thresholds to 1 GiB
// (mallopt) and pads the heap's growth by 64 MiB, so freed memory stays in the heap for the
// next step; the resident memory then stays near its peak between steps. glibc's own variables
// (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_) set in the environment win.
// Returns what it did, for the log.
std::string keepFreedMemoryInTheHeap();

}  // namespace cdl::core
