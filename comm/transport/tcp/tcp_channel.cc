// Tagged messages over the TCP ring links (Note [TCP ring messages]).
#include "comm/transport/tcp/tcp_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

constexpr uint32_t kMagic = 0x74636463;  // "cdct" on the wire

struct Header {
  uint32_t magic = kMagic;
  uint32_t reserved = 0;
  uint64_t tag = 0;
  uint64_t bytes = 0;
};
static_assert(sizeof(Header) == 24, "the header is 24 bytes on the wire");

class TcpWork;

// One message's move: a send (header and body) or a receive (body).
struct Transfer {
  TcpWork* work = nullptr;
  char* data = nullptr;
  size_t bytes = 0;
  Header header;    // a send's header
  size_t done = 0;  // bytes moved: a send's header and body, a receive's body
};

std::exception_ptr errorOf(const std::string& message) {
  try {
    CDL_THROW(message);
  } catch (...) {
    return std::current_exception();
  }
}

bool wouldBlock() { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }

}  // namespace

// The channel's state, shared by its Works; every member is guarded by mu.
struct TcpChannel::Core {
  std::mutex mu;
  TcpRingLinks links;
  int rank = 0, next = 0, prev = 0;
  std::deque<Transfer> sends;                                 // front: being written
  std::map<uint64_t, std::deque<Transfer>> posted;            // receives waiting for a message
  std::map<uint64_t, std::deque<std::vector<char>>> arrived;  // messages waiting for a receive
  Header incoming;                                            // the header being read
  size_t headerDone = 0;
  bool inBody = false;
  Transfer reading;         // where the body goes: a posted receive (work set) or spill
  std::vector<char> spill;  // the body of a message no receive waits for yet
  std::string broken;       // why the channel can no longer be used; empty while it can
  uint64_t moved = 0;       // bytes moved so far, either way

  // Moves what the sockets take and hold now, then, when nothing moved and `most` is positive,
  // sleeps until a socket is ready (at most `most`) and moves again. Takes mu.
  void progress(std::chrono::microseconds most);
  // With mu held:
  void moveBytes();
  void writeSome();
  void readSome();
  ssize_t receive(char* to, size_t n);
  bool takePosted(uint64_t tag, Transfer* t);
  std::string mismatch(uint64_t tag, uint64_t sent, size_t expected) const;
  void deliver(uint64_t tag, std::vector<char>&& body);
  void complete(Transfer& t);
  void fail(const std::string& why);
  std::string link(bool out) const {
    return out ? "the TCP link from rank " + std::to_string(rank) + " to rank " +
                     std::to_string(next)
               : "the TCP link from rank " + std::to_string(prev) + " to rank " +
                     std::to_string(rank);
  }
};

namespace {

// A Work of one exchange: done when its parts (a send, a receive) are.
class TcpWork : public Work {
 public:
  TcpWork(std::string what, std::shared_ptr<TcpChannel::Core> core)
      : Work(std::move(what)), core_(std::move(core)) {}
  ~TcpWork() override { abandon(); }

  bool polled() const override { return true; }
  bool idle(std::chrono::microseconds most) override {
    core_->progress(most);
    return true;
  }

  // Abandoning an exchange with a part in flight breaks the channel: the peer's bytes for it may
  // still come, and its buffers may go (Note [TCP ring messages]).
  void abandon() override {
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      if (parts > 0) core_->fail(what() + " was abandoned in flight");
    }
    finishAbandoned();
  }

  int parts = 0;  // guarded by core_->mu

 protected:
  bool poll() override {
    core_->progress(std::chrono::microseconds(0));
    std::lock_guard<std::mutex> lock(core_->mu);
    return parts == 0;
  }

 private:
  std::shared_ptr<TcpChannel::Core> core_;
};

}  // namespace

void TcpChannel::Core::complete(Transfer& t) {
  if (--t.work->parts == 0) t.work->finish();
}

void TcpChannel::Core::fail(const std::string& why) {
  if (broken.empty()) broken = why;
  const std::exception_ptr error = errorOf(broken);
  auto failWork = [&](Transfer& t) {
    if (t.work == nullptr) return;
    t.work->parts = 0;
    t.work->finish(error);
  };
  for (Transfer& t : sends) failWork(t);
  for (auto& [tag, queue] : posted) {
    for (Transfer& t : queue) failWork(t);
  }
  failWork(reading);
  sends.clear();
  posted.clear();
  arrived.clear();
  reading = Transfer{};
  spill.clear();
}

void TcpChannel::Core::writeSome() {
  while (!sends.empty()) {
    Transfer& t = sends.front();
    const size_t total = sizeof(Header) + t.bytes;
    iovec parts[2];
    int count = 0;
    if (t.done < sizeof(Header)) {
      parts[count++] = {reinterpret_cast<char*>(&t.header) + t.done, sizeof(Header) - t.done};
      if (t.bytes > 0) parts[count++] = {t.data, t.bytes};
    } else {
      parts[count++] = {t.data + (t.done - sizeof(Header)), total - t.done};
    }
    msghdr msg{};
    msg.msg_iov = parts;
    msg.msg_iovlen = static_cast<size_t>(count);
    const ssize_t k = ::sendmsg(links.toNext, &msg, MSG_NOSIGNAL);
    if (k < 0) {
      if (wouldBlock()) return;
      fail(link(true) + " failed: " + std::strerror(errno) + " (did rank " + std::to_string(next) +
           " end?)");
      return;
    }
    t.done += static_cast<size_t>(k);
    moved += static_cast<uint64_t>(k);
    if (t.done < total) continue;
    complete(t);
    sends.pop_front();
  }
}

// The bytes recv() read (more than zero), or -1: none there now, or the channel failed.
ssize_t TcpChannel::Core::receive(char* to, size_t n) {
  const ssize_t k = ::recv(links.fromPrev, to, n, 0);
  if (k > 0) {
    moved += static_cast<uint64_t>(k);
    return k;
  }
  if (k == 0) {
    fail(link(false) + " was closed by rank " + std::to_string(prev));
  } else if (!wouldBlock()) {
    fail(link(false) + " failed: " + std::strerror(errno));
  }
  return -1;
}

// Takes the first receive posted for `tag` into *t, if there is one.
bool TcpChannel::Core::takePosted(uint64_t tag, Transfer* t) {
  auto it = posted.find(tag);
  if (it == posted.end()) return false;
  *t = it->second.front();
  it->second.pop_front();
  if (it->second.empty()) posted.erase(it);
  return true;
}

std::string TcpChannel::Core::mismatch(uint64_t tag, uint64_t sent, size_t expected) const {
  return "rank " + std::to_string(prev) + " sent " + std::to_string(sent) + " bytes with tag " +
         std::to_string(tag) + " where rank " + std::to_string(rank) + " expected " +
         std::to_string(expected);
}

void TcpChannel::Core::deliver(uint64_t tag, std::vector<char>&& body) {
  Transfer t;
  if (!takePosted(tag, &t)) {
    arrived[tag].push_back(std::move(body));
    return;
  }
  if (body.size() != t.bytes) return fail(mismatch(tag, body.size(), t.bytes));
  if (!body.empty()) std::memcpy(t.data, body.data(), body.size());
  complete(t);
}

void TcpChannel::Core::readSome() {
  while (broken.empty()) {
    if (!inBody) {
      const ssize_t k =
          receive(reinterpret_cast<char*>(&incoming) + headerDone, sizeof(Header) - headerDone);
      if (k < 0) return;
      headerDone += static_cast<size_t>(k);
      if (headerDone < sizeof(Header)) continue;
      headerDone = 0;
      if (incoming.magic != kMagic || incoming.reserved != 0) {
        return fail(link(false) + " carried a message that is not cdl's (bad header)");
      }
      inBody = true;
      reading = Transfer{};
      if (takePosted(incoming.tag, &reading)) {  // straight into the receive's buffer
        if (reading.bytes != incoming.bytes) {
          return fail(mismatch(incoming.tag, incoming.bytes, reading.bytes));
        }
      } else {
        spill.resize(incoming.bytes);
      }
    }
    const bool direct = reading.work != nullptr;
    char* to = direct ? reading.data : spill.data();
    const size_t want = incoming.bytes - reading.done;
    if (want > 0) {
      const ssize_t k = receive(to + reading.done, want);
      if (k < 0) return;
      reading.done += static_cast<size_t>(k);
      if (reading.done < incoming.bytes) continue;
    }
    inBody = false;
    if (direct) {
      Transfer t = reading;
      reading = Transfer{};
      complete(t);
    } else {
      reading = Transfer{};
      deliver(incoming.tag, std::move(spill));
      spill = {};
    }
  }
}

void TcpChannel::Core::moveBytes() {
  try {
    writeSome();
    readSome();
  } catch (const std::exception& e) {  // out of memory for a message that came first
    fail(link(false) + ": " + e.what());
  }
}

void TcpChannel::Core::progress(std::chrono::microseconds most) {
  std::unique_lock<std::mutex> lock(mu);
  if (!broken.empty()) return;
  const uint64_t before = moved;
  moveBytes();
  if (most.count() <= 0 || moved != before || !broken.empty()) return;
  pollfd fds[2] = {{links.toNext, static_cast<short>(sends.empty() ? 0 : POLLOUT), 0},
                   {links.fromPrev, POLLIN, 0}};
  lock.unlock();
  const timespec limit{static_cast<time_t>(most.count() / 1000000),
                       static_cast<long>(most.count() % 1000000) * 1000};
  const int ready = ::ppoll(fds, 2, &limit, nullptr);
  lock.lock();
  if (ready <= 0 || !broken.empty()) return;
  if ((fds[0].revents & (POLLERR | POLLHUP)) != 0 && sends.empty()) {
    return fail(link(true) + " was closed (did rank " + std::to_string(next) + " end?)");
  }
  moveBytes();
}

namespace {

// Every channel of the process, for resetTcpChannels().
struct Channels {
  std::mutex mu;
  std::vector<std::weak_ptr<TcpChannel::Core>> all;
};
Channels& channels() {
  static Channels* c = new Channels();
  return *c;
}

}  // namespace

TcpChannel::TcpChannel(TcpRingLinks links, int rank, int next, int prev)
    : core_(std::make_shared<Core>()) {
  core_->links = links;
  core_->rank = rank;
  core_->next = next;
  core_->prev = prev;
  std::lock_guard<std::mutex> lock(channels().mu);
  channels().all.push_back(core_);
}

void resetTcpChannels() {
  std::lock_guard<std::mutex> lock(channels().mu);
  for (const auto& weak : channels().all) {
    const std::shared_ptr<TcpChannel::Core> core = weak.lock();
    if (!core) continue;
    std::lock_guard<std::mutex> hold(core->mu);
    // A connect() to AF_UNSPEC disconnects a TCP socket with a reset and keeps the descriptor.
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    for (int fd : {core->links.toNext, core->links.fromPrev}) {
      if (fd >= 0) ::connect(fd, &unspec, sizeof(unspec));
    }
    core->fail("its TCP links were reset (CDL_FAULT)");
  }
}

TcpChannel::~TcpChannel() {
  std::lock_guard<std::mutex> lock(core_->mu);
  core_->fail("the communicator was destroyed with this exchange in flight");
  closeTcpRing(core_->links);
}

std::shared_ptr<Work> TcpChannel::exchange(const void* send, size_t sendBytes, bool toNext,
                                           void* recv, size_t recvBytes, bool fromPrev,
                                           uint64_t tag, const std::string& what) {
  auto work = std::make_shared<TcpWork>(what, core_);
  Core& c = *core_;
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.broken.empty()) {
    work->finish(errorOf(what + ": " + c.broken));
    return work;
  }
  work->parts = (toNext ? 1 : 0) + (fromPrev ? 1 : 0);
  if (fromPrev) {
    Transfer t;
    t.work = work.get();
    t.data = static_cast<char*>(recv);
    t.bytes = recvBytes;
    c.posted[tag].push_back(t);
    auto early = c.arrived.find(tag);
    if (early != c.arrived.end()) {  // its message came first
      std::vector<char> body = std::move(early->second.front());
      early->second.pop_front();
      if (early->second.empty()) c.arrived.erase(early);
      c.deliver(tag, std::move(body));
    }
  }
  if (toNext && c.broken.empty()) {
    Transfer t;
    t.work = work.get();
    t.data = const_cast<char*>(static_cast<const char*>(send));
    t.bytes = sendBytes;
    t.header.tag = tag;
    t.header.bytes = sendBytes;
    c.sends.push_back(t);
    c.writeSome();  // at once, while the socket has room
  }
  if (work->parts == 0) work->finish();
  return work;
}

}  // namespace cdl::comm
