#include "kernels/base/error.h"

#include <atomic>
#include <cstring>

namespace cdl {
namespace {
thread_local int tThreadRank = -1;
std::atomic<int> gProcessRank{-1};
}  // namespace

void setThreadRank(int rank) { tThreadRank = rank; }
void setProcessRank(int rank) { gProcessRank.store(rank); }

int currentRank() { return tThreadRank >= 0 ? tThreadRank : gProcessRank.load(); }

namespace detail {

void throwError(const char* file, int line, const std::string& msg) {
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  std::ostringstream os;
  const int rank = currentRank();
  if (rank >= 0) os << "[rank " << rank << "] ";
  os << base << ":" << line << ": " << msg;
  throw Error(os.str());
}

}  // namespace detail
}  // namespace cdl
