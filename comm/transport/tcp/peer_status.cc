// The status side channel of Note [Peer status].
#include "comm/transport/tcp/peer_status.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>
#include <utility>

#include "kernels/base/error.h"

namespace cdl::comm {

void CollectiveLog::issued(const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  ++issued_;
  latest_ = what;
  at_ = Clock::now();
}

CollectiveLog::Snapshot CollectiveLog::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.issued = issued_;
  s.latest = latest_;
  s.ageSeconds = issued_ == 0 ? 0.0 : secondsSince(at_);
  return s;
}

namespace {

constexpr uint64_t kQueryMagic = 0x3171617473646c63ULL;  // "cldstaq1", little-endian
constexpr uint64_t kReplyMagic = 0x3172617473646c63ULL;  // "cldstar1"
constexpr uint32_t kMaxLatest = 1024;                    // bytes of the latest's description
constexpr int kServeMs = 1000;                           // one query's reading and answering

struct Query {
  uint64_t magic;
  uint64_t id;
  int32_t rank;
  int32_t reserved;
};

struct Reply {
  uint64_t magic;
  uint64_t id;
  int32_t rank;
  uint32_t latestBytes;
  uint64_t issued;
  double ageSeconds;
};

// The process's status server: one thread answering queries one at a time.
class StatusServer {
 public:
  static StatusServer& instance() {
    static StatusServer* s = new StatusServer();  // never destroyed: its thread runs to the end
    return *s;
  }

  Endpoint endpoint() {
    std::lock_guard<std::mutex> lock(mu_);
    if (listener_ < 0) {
      int port = 0;
      const std::string who = "peer status";
      const int fd = listenAnywhere(currentRank(), &port, who);
      try {
        endpoint_ = localEndpoint(port, who);
      } catch (...) {
        ::close(fd);
        throw;
      }
      listener_ = fd;
      std::thread([this] { serve(); }).detach();
    }
    return endpoint_;
  }

  std::shared_ptr<CollectiveLog> add(uint64_t id, int rank) {
    auto log = std::make_shared<CollectiveLog>();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = logs_.begin(); it != logs_.end();) {
      it = it->second.expired() ? logs_.erase(it) : std::next(it);
    }
    logs_[{id, rank}] = log;
    return log;
  }

 private:
  void serve() {
    while (true) {
      pollfd pfd{listener_, POLLIN, 0};
      if (::poll(&pfd, 1, -1) <= 0) continue;
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      try {
        setNonBlocking(fd, "peer status");
        answer(fd);
      } catch (const std::exception&) {  // a query that could not be answered gets none
      }
      ::close(fd);
    }
  }

  void answer(int fd) {
    const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kServeMs);
    Query q{};
    if (!transferBefore(fd, reinterpret_cast<char*>(&q), sizeof(q), false, deadline) ||
        q.magic != kQueryMagic) {
      return;
    }
    std::shared_ptr<CollectiveLog> log;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = logs_.find({q.id, q.rank});
      if (it != logs_.end()) log = it->second.lock();
    }
    if (!log) return;  // not this process's communicator, or not this rank
    const CollectiveLog::Snapshot s = log->snapshot();
    std::string latest = s.latest.substr(0, kMaxLatest);
    Reply r{kReplyMagic, q.id,        q.rank, static_cast<uint32_t>(latest.size()),
            s.issued,    s.ageSeconds};
    std::string bytes(reinterpret_cast<const char*>(&r), sizeof(r));
    bytes += latest;
    transferBefore(fd, bytes.data(), bytes.size(), true, deadline);
  }

  std::mutex mu_;
  int listener_ = -1;
  Endpoint endpoint_{};
  std::map<std::pair<uint64_t, int>, std::weak_ptr<CollectiveLog>> logs_;
};

// One connection of a query in flight: to one of a peer's addresses.
struct Attempt {
  int peer = -1;
  int fd = -1;
  bool sent = false;
  std::string got;
};

// Moves attempt a on after poll() found it ready; false once it is over (answered or failed).
bool step(Attempt& a, uint64_t id, std::vector<PeerAnswer>& answers) {
  if (!a.sent) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(a.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return false;
    const Query q{kQueryMagic, id, a.peer, 0};
    if (::send(a.fd, &q, sizeof(q), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(q))) return false;
    a.sent = true;
    return true;
  }
  char buf[2048];
  const ssize_t k = ::recv(a.fd, buf, sizeof(buf), 0);
  if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  if (k <= 0) return false;
  a.got.append(buf, static_cast<size_t>(k));
  if (a.got.size() < sizeof(Reply)) return true;
  Reply r{};
  std::memcpy(&r, a.got.data(), sizeof(r));
  if (r.magic != kReplyMagic || r.id != id || r.rank != a.peer || r.latestBytes > kMaxLatest) {
    return false;
  }
  if (a.got.size() < sizeof(Reply) + r.latestBytes) return true;
  PeerAnswer& p = answers[static_cast<size_t>(a.peer)];
  p.answered = true;
  p.status.issued = r.issued;
  p.status.ageSeconds = r.ageSeconds;
  p.status.latest = a.got.substr(sizeof(Reply), r.latestBytes);
  return false;
}

std::string rankList(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

std::string seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f s", s);
  return text;
}

}  // namespace

Endpoint statusEndpoint() { return StatusServer::instance().endpoint(); }

std::shared_ptr<CollectiveLog> registerCollectiveLog(uint64_t id, int rank) {
  return StatusServer::instance().add(id, rank);
}

std::vector<PeerAnswer> askPeers(const std::vector<Endpoint>& endpoints, int self, uint64_t id,
                                 std::chrono::milliseconds budget) {
  std::vector<PeerAnswer> answers(endpoints.size());
  if (self >= 0 && self < static_cast<int>(answers.size())) answers[self].answered = true;
  std::vector<Attempt> live;
  for (int r = 0; r < static_cast<int>(endpoints.size()); ++r) {
    if (r == self) continue;
    const Endpoint& e = endpoints[static_cast<size_t>(r)];
    for (int i = 0; i < e.count && i < kMaxEndpointAddresses; ++i) {
      const int fd = startConnect(e.addresses[i], e.port);
      if (fd >= 0) live.push_back({r, fd, false, {}});
    }
  }
  const Clock::time_point deadline = Clock::now() + budget;
  while (!live.empty()) {
    std::vector<pollfd> fds;
    for (const Attempt& a : live) {
      fds.push_back({a.fd, static_cast<short>(a.sent ? POLLIN : POLLOUT), 0});
    }
    const int left = msLeft(deadline);
    if (left == 0 || ::poll(fds.data(), fds.size(), left) <= 0) break;
    std::vector<Attempt> next;
    for (size_t i = 0; i < live.size(); ++i) {
      Attempt& a = live[i];
      const bool going = answers[static_cast<size_t>(a.peer)].answered
                             ? false
                             : (fds[i].revents == 0 || step(a, id, answers));
      if (going) {
        next.push_back(std::move(a));
      } else {
        ::close(a.fd);
      }
    }
    live = std::move(next);
  }
  for (const Attempt& a : live) ::close(a.fd);
  return answers;
}

std::string describeMissing(const std::vector<PeerAnswer>& answers, int self, uint64_t seq,
                            double budgetSeconds) {
  std::vector<int> silent;
  std::vector<std::string> parts;
  for (int r = 0; r < static_cast<int>(answers.size()); ++r) {
    if (r == self) continue;
    const PeerAnswer& a = answers[static_cast<size_t>(r)];
    if (!a.answered) {
      silent.push_back(r);
    } else if (a.status.issued <= seq) {
      parts.push_back("rank " + std::to_string(r) + ": it has not issued it; " +
                      (a.status.issued == 0
                           ? std::string("it has issued no collective yet")
                           : "its latest collective was issued " + seconds(a.status.ageSeconds) +
                                 " ago: " + a.status.latest));
    }
  }
  if (!silent.empty()) {
    parts.insert(parts.begin(),
                 rankList(silent) + (silent.size() == 1 ? ": it" : ": they") +
                     " did not answer a status query within " + seconds(budgetSeconds) +
                     (silent.size() == 1 ? " (stopped, hung, or cut off: its process, host or link)"
                                         : " (stopped, hung, or cut off: their processes, hosts or "
                                           "links)"));
  }
  if (parts.empty()) {
    return "every rank has issued it, so the transport is stuck: a link that drops its packets, "
           "or a rank whose MPI no longer progresses";
  }
  std::string out = "waiting for ";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out;
}

}  // namespace cdl::comm
