#include "core/train/cores.h"

#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "kernels/base/byte_io.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

std::string machineId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (in && std::getline(in, id) && !id.empty()) return id;
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) == 0) return host;
  return "unknown";
}

bool overlaps(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if ((a[i] & b[i]) != 0) return true;
  }
  return false;
}

// The ranks (rank itself included) on rank's machine whose masks overlap its own.
int sharers(const std::vector<Placement>& all, int rank) {
  const Placement& me = all[static_cast<size_t>(rank)];
  int n = 0;
  for (const Placement& p : all) n += p.machine == me.machine && overlaps(p.cpus, me.cpus);
  return n;
}

}  // namespace

Placement thisPlacement() {
  Placement p;
  p.machine = machineId();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
    // No mask to read: every CPU the system has online.
    const long n = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
    for (long c = 0; c < n && c < CPU_SETSIZE; ++c) CPU_SET(static_cast<int>(c), &set);
  }
  p.cpus.assign(CPU_SETSIZE / 8, 0);
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set))
      p.cpus[static_cast<size_t>(c / 8)] |= static_cast<uint8_t>(1u << (c % 8));
  }
  return p;
}

int cpuCount(const std::vector<uint8_t>& cpus) {
  int n = 0;
  for (uint8_t b : cpus) n += __builtin_popcount(b);
  return n;
}

int defaultThreads(const std::vector<Placement>& all, int rank) {
  CDL_CHECK(rank >= 0 && rank < static_cast<int>(all.size()), "rank ", rank, " of ", all.size());
  return std::max(1, cpuCount(all[static_cast<size_t>(rank)].cpus) / sharers(all, rank));
}

std::vector<Placement> allPlacements(comm::Communicator& world) {
  const Placement mine = thisPlacement();
  ByteWriter w;
  w.put<uint32_t>(static_cast<uint32_t>(mine.machine.size()));
  w.putBytes(mine.machine.data(), mine.machine.size());
  w.putBytes(mine.cpus.data(), mine.cpus.size());
  Bytes all;
  std::vector<size_t> sizes;
  world.allgatherv(w.bytes(), &all, &sizes)->wait();
  std::vector<Placement> placements;
  size_t at = 0;
  for (size_t r = 0; r < sizes.size(); ++r) {
    ByteReader in(all.data() + at, sizes[r]);
    at += sizes[r];
    Placement q;
    const uint32_t machineBytes = in.take<uint32_t>("a rank's machine id length");
    const uint8_t* machine = in.takeBytes(machineBytes, "a rank's machine id");
    q.machine.assign(reinterpret_cast<const char*>(machine), machineBytes);
    q.cpus.assign(in.pos(), in.pos() + in.left());
    placements.push_back(std::move(q));
  }
  return placements;
}

int defaultThreads(comm::Communicator& world, std::string* why) {
  const std::vector<Placement> placements = allPlacements(world);
  const int rank = world.rank();
  if (why != nullptr) {
    const int n = sharers(placements, rank);
    *why = std::to_string(cpuCount(placements[static_cast<size_t>(rank)].cpus)) +
           " CPUs in its affinity mask, shared by " + std::to_string(n) + " rank" +
           (n == 1 ? "" : "s") + " on its machine";
  }
  return defaultThreads(placements, rank);
}

LocalRank localRankOf(const std::vector<Placement>& all, int rank) {
  CDL_CHECK(rank >= 0 && rank < static_cast<int>(all.size()), "rank ", rank, " of ", all.size());
  const std::string& machine = all[static_cast<size_t>(rank)].machine;
  LocalRank l;
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    if (all[static_cast<size_t>(r)].machine != machine) continue;
    if (r < rank) ++l.index;
    ++l.count;
  }
  return l;
}

std::string keepFreedMemoryInTheHeap() {
  std::string out;
  const struct {
    const char* variable;
    int option;
    int value;
    const char* what;
  } settings[] = {{"MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 1 << 30, "mmap threshold 1 GiB"},
                  {"MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, 1 << 30, "trim threshold 1 GiB"},
                  {"MALLOC_TOP_PAD_", M_TOP_PAD, 64 << 20, "top pad 64 MiB"}};
  for (const auto& s : settings) {
    const bool set = std::getenv(s.variable) != nullptr;
    if (!set && mallopt(s.option, s.value) != 1) continue;
    out += (out.empty() ? "" : ", ") +
           (set ? std::string(s.variable) + " from the environment" : std::string(s.what));
  }
  return out;
}

}  // namespace cdl::core
