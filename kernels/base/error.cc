#include "kernels/base/error.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace cdl {
namespace {
thread_local int tThreadRank = -1;
std::atomic<int> gProcessRank{-1};
}  // namespace

void setThreadRank(int rank) { tThreadRank = rank; }
void setProcessRank(int rank) { gProcessRank.store(rank); }

int currentRank() { return tThreadRank >= 0 ? tThreadRank : gProcessRank.load(); }

std::string errorBody(const std::string& what) {
  size_t at = 0;
  if (what.compare(0, 6, "[rank ") == 0) {
    const size_t close = what.find("] ");
    if (close == std::string::npos) return what;
    at = close + 2;
  }
  // "file.cc:LINE: "
  const size_t colon = what.find(':', at);
  if (colon == std::string::npos || colon == at) return what;
  size_t digits = colon + 1;
  while (digits < what.size() && what[digits] >= '0' && what[digits] <= '9') ++digits;
  if (digits == colon + 1 || what.compare(digits, 2, ": ") != 0) return what;
  if (what.find(' ', at) < colon) return what;  // not a file name
  return what.substr(digits + 2);
}

std::string readWholeFile(const std::string& path, const std::string& what) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  CDL_CHECK(f, "cannot open ", what, " ", path, ": ", std::strerror(errno));
  std::string bytes;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f.get())) > 0;) bytes.append(buf, n);
  CDL_CHECK(!std::ferror(f.get()), "cannot read ", what, " ", path, ": ", std::strerror(errno));
  return bytes;
}

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
