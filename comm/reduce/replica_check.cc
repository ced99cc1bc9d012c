#include "comm/reduce/replica_check.h"

#include <algorithm>
#include <chrono>

#include "kernels/base/error.h"

namespace cdl::comm {

void requireSameOnEveryRank(Communicator& comm, const std::vector<std::string>& items,
                            const std::string& what, const std::string& advice,
                            double timeoutSeconds) {
  // Each item on a line of its own, so items must not hold a newline.
  std::string mine;
  for (const std::string& item : items) {
    CDL_CHECK(item.find('\n') == std::string::npos, what, ": '", item, "' holds a newline");
    mine += item + "\n";
  }
  Bytes send(mine.begin(), mine.end()), all;
  std::vector<size_t> sizes;
  auto work = comm.allgatherv(send, &all, &sizes);
  if (timeoutSeconds > 0) {
    work->wait(std::chrono::duration<double>(timeoutSeconds));
  } else {
    work->wait();
  }
  std::vector<std::vector<std::string>> lines(sizes.size());
  size_t off = 0;
  for (size_t r = 0; r < sizes.size(); ++r) {
    size_t begin = off;
    for (size_t i = off; i < off + sizes[r]; ++i) {
      if (all[i] != '\n') continue;
      lines[r].emplace_back(all.begin() + begin, all.begin() + i);
      begin = i + 1;
    }
    off += sizes[r];
  }
  for (size_t r = 1; r < lines.size(); ++r) {
    const size_t n = std::max(lines[0].size(), lines[r].size());
    for (size_t i = 0; i < n; ++i) {
      const std::string a = i < lines[0].size() ? lines[0][i] : "(none)";
      const std::string b = i < lines[r].size() ? lines[r][i] : "(none)";
      CDL_CHECK(a == b, what, " #", i, " differs between ranks: rank 0 has '", a, "', rank ", r,
                " has '", b, "'; ", advice);
    }
  }
}

}  // namespace cdl::comm
