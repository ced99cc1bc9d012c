// In-process ranks as threads (makeLocalGroup): the last rank to arrive at a collective performs
// it on everyone's buffers and completes everyone's Work.
#include <cstring>
#include <deque>
#include <map>
#include <sstream>
#include <tuple>

#include "comm/transport/communicator.h"
#include "comm/transport/ring_allreduce.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

enum class Kind { kAllreduce, kAllgatherv, kAlltoallv, kBroadcast, kBarrier };

struct Call {
  Kind kind = Kind::kBarrier;
  std::string signature;  // what must agree across ranks
  float* data = nullptr;
  int64_t n = 0;
  const Bytes* send = nullptr;
  Bytes* recv = nullptr;
  std::vector<size_t>* sizes = nullptr;
  const std::vector<Bytes>* sendv = nullptr;
  std::vector<Bytes>* recvv = nullptr;
  int root = 0;
};

class LocalWork;

struct Round {
  std::vector<Call> calls;
  std::vector<bool> arrived;
  int count = 0;
  std::vector<std::shared_ptr<LocalWork>> works;
};

// One half of a point-to-point exchange waiting for its other half.
struct Posted {
  const void* send = nullptr;  // a send's bytes
  void* recv = nullptr;        // a receive's destination
  size_t bytes = 0;
  std::shared_ptr<Work> work;
};

// The messages between two ranks with one tag, in the order they were posted.
struct Channel {
  std::deque<Posted> sends, recvs;
};

struct Hub {
  Hub(int n, const CollectiveOptions& o) : size(n), options(o) {}
  const int size;
  const CollectiveOptions options;
  std::mutex mu;
  std::map<uint64_t, Round> rounds;                            // by collective sequence number
  std::map<std::tuple<int, int, uint64_t>, Channel> channels;  // by (from, to, tag)
};

// Matches the oldest send and receive of a channel when both are there: copies the bytes and
// completes both, or fails both when the sizes differ. Called with the hub's lock held; the Works
// are finished after it is released.
void matchChannel(Channel& ch, int from, int to,
                  std::vector<std::pair<std::shared_ptr<Work>, std::exception_ptr>>* done) {
  while (!ch.sends.empty() && !ch.recvs.empty()) {
    Posted s = std::move(ch.sends.front()), r = std::move(ch.recvs.front());
    ch.sends.pop_front();
    ch.recvs.pop_front();
    std::exception_ptr error;
    if (s.bytes != r.bytes) {
      try {
        CDL_THROW("sendRecv: rank ", from, " sent ", s.bytes, " bytes but rank ", to, " expected ",
                  r.bytes);
      } catch (...) {
        error = std::current_exception();
      }
    } else if (s.bytes > 0) {
      std::memcpy(r.recv, s.send, s.bytes);
    }
    done->emplace_back(s.work, error);
    done->emplace_back(r.work, error);
  }
}

class LocalWork : public Work {
 public:
  LocalWork(std::string what, std::shared_ptr<Hub> hub, uint64_t seq)
      : Work(std::move(what)), hub_(std::move(hub)), seq_(seq) {}

 protected:
  std::string missing() const override {
    std::lock_guard<std::mutex> lock(hub_->mu);
    auto it = hub_->rounds.find(seq_);
    if (it == hub_->rounds.end()) return {};
    std::ostringstream os;
    int absent = 0;
    for (int r = 0; r < hub_->size; ++r) {
      if (!it->second.arrived[r]) os << (absent++ ? ", " : "") << r;
    }
    return absent == 0 ? std::string()
                       : (absent == 1 ? "rank " : "ranks ") + os.str() + " did not join it";
  }

 private:
  std::shared_ptr<Hub> hub_;
  uint64_t seq_;
};

void perform(Round& round, int size, uint64_t seq) {
  const Call& first = round.calls[0];
  for (int r = 1; r < size; ++r) {
    CDL_CHECK(round.calls[r].signature == first.signature, "collective #", seq,
              " differs across ranks: rank 0 issued ", first.signature, ", rank ", r, " issued ",
              round.calls[r].signature, " (every rank must issue the same collectives in order)");
  }
  switch (first.kind) {
    case Kind::kAllreduce: {
      std::vector<float> acc(first.data, first.data + first.n);
      for (int r = 1; r < size; ++r) {
        const float* d = round.calls[r].data;
        for (int64_t i = 0; i < first.n; ++i) acc[i] += d[i];
      }
      for (int r = 0; r < size; ++r) std::copy(acc.begin(), acc.end(), round.calls[r].data);
      break;
    }
    case Kind::kAllgatherv: {
      Bytes all;
      std::vector<size_t> sizes(size);
      for (int r = 0; r < size; ++r) {
        sizes[r] = round.calls[r].send->size();
        all.insert(all.end(), round.calls[r].send->begin(), round.calls[r].send->end());
      }
      for (int r = 0; r < size; ++r) {
        *round.calls[r].recv = all;
        *round.calls[r].sizes = sizes;
      }
      break;
    }
    case Kind::kAlltoallv: {
      for (int r = 0; r < size; ++r) {
        CDL_CHECK(static_cast<int>(round.calls[r].sendv->size()) == size, "alltoallv: rank ", r,
                  " passed ", round.calls[r].sendv->size(), " send buffers for ", size, " ranks");
      }
      std::vector<std::vector<Bytes>> out(size, std::vector<Bytes>(size));
      for (int from = 0; from < size; ++from) {
        for (int to = 0; to < size; ++to) out[to][from] = (*round.calls[from].sendv)[to];
      }
      for (int r = 0; r < size; ++r) *round.calls[r].recvv = std::move(out[r]);
      break;
    }
    case Kind::kBroadcast: {
      const Bytes data = *round.calls[first.root].recv;
      for (int r = 0; r < size; ++r) *round.calls[r].recv = data;
      break;
    }
    case Kind::kBarrier:
      break;
  }
}

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<Hub> hub, int rank) : hub_(std::move(hub)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return hub_->size; }
  MemoryKind memory() const override { return MemoryKind::kHost; }

  std::shared_ptr<Work> allreduce(float* data, int64_t n) override {
    CDL_CHECK(n >= 0 && (data != nullptr || n == 0), "allreduce: bad buffer (n = ", n, ")");
    if (useRing(hub_->options, hub_->size, n)) {
      const uint64_t seq = seq_++;
      return ringAllreduce(*this, data, n, seq,
                           "allreduce of " + std::to_string(n) + " floats (ring, collective #" +
                               std::to_string(seq) + " on rank " + std::to_string(rank_) + ")");
    }
    Call c;
    c.kind = Kind::kAllreduce;
    c.signature = "allreduce of " + std::to_string(n) + " floats";
    c.data = data;
    c.n = n;
    return issue(std::move(c));
  }

  std::shared_ptr<Work> allgatherv(const Bytes& send, Bytes* recv,
                                   std::vector<size_t>* sizes) override {
    Call c;
    c.kind = Kind::kAllgatherv;
    c.signature = "allgatherv";
    c.send = &send;
    c.recv = recv;
    c.sizes = sizes;
    return issue(std::move(c));
  }

  std::shared_ptr<Work> alltoallv(const std::vector<Bytes>& send,
                                  std::vector<Bytes>* recv) override {
    Call c;
    c.kind = Kind::kAlltoallv;
    c.signature = "alltoallv";
    c.sendv = &send;
    c.recvv = recv;
    return issue(std::move(c));
  }

  std::shared_ptr<Work> broadcast(Bytes* data, int root) override {
    CDL_CHECK(root >= 0 && root < size(), "broadcast: root ", root, " outside ", size(), " ranks");
    Call c;
    c.kind = Kind::kBroadcast;
    c.signature = "broadcast from rank " + std::to_string(root);
    c.recv = data;
    c.root = root;
    return issue(std::move(c));
  }

  std::shared_ptr<Work> barrier() override {
    Call c;
    c.signature = "barrier";
    return issue(std::move(c));
  }

  std::shared_ptr<Work> sendRecv(const void* send, size_t sendBytes, int to, void* recv,
                                 size_t recvBytes, int from, uint64_t tag) override {
    const int size = hub_->size;
    CDL_CHECK(to >= 0 && to < size && from >= 0 && from < size, "sendRecv: peers ", to, " and ",
              from, " outside ", size, " ranks");
    CDL_CHECK((send != nullptr || sendBytes == 0) && (recv != nullptr || recvBytes == 0),
              "sendRecv: null buffer");
    const std::string tail =
        " (tag " + std::to_string(tag) + " on rank " + std::to_string(rank_) + ")";
    auto sent = std::make_shared<Work>("send of " + std::to_string(sendBytes) + " bytes to rank " +
                                       std::to_string(to) + tail);
    auto received = std::make_shared<Work>("receive of " + std::to_string(recvBytes) +
                                           " bytes from rank " + std::to_string(from) + tail);
    std::vector<std::pair<std::shared_ptr<Work>, std::exception_ptr>> done;
    {
      std::lock_guard<std::mutex> lock(hub_->mu);
      const auto outKey = std::make_tuple(rank_, to, tag),
                 inKey = std::make_tuple(from, rank_, tag);
      Channel& out = hub_->channels[outKey];
      out.sends.push_back({send, nullptr, sendBytes, sent});
      matchChannel(out, rank_, to, &done);
      Channel& in = hub_->channels[inKey];
      in.recvs.push_back({nullptr, recv, recvBytes, received});
      matchChannel(in, from, rank_, &done);
      for (const auto& key : {outKey, inKey}) {
        auto it = hub_->channels.find(key);
        if (it != hub_->channels.end() && it->second.sends.empty() && it->second.recvs.empty()) {
          hub_->channels.erase(it);
        }
      }
    }
    for (auto& [work, error] : done) work->finish(error);
    return std::make_shared<PhasedWork>("sendRecv" + tail,
                                        std::vector<PhasedWork::Phase>{[sent, received] {
                                          return std::vector<std::shared_ptr<Work>>{sent, received};
                                        }});
  }

 private:
  std::shared_ptr<Work> issue(Call call) {
    const uint64_t seq = seq_++;
    auto work =
        std::make_shared<LocalWork>(call.signature + " (collective #" + std::to_string(seq) +
                                        " on rank " + std::to_string(rank_) + ")",
                                    hub_, seq);
    Round ready;
    {
      std::lock_guard<std::mutex> lock(hub_->mu);
      Round& round = hub_->rounds[seq];
      if (round.calls.empty()) {
        round.calls.resize(hub_->size);
        round.arrived.assign(hub_->size, false);
        round.works.resize(hub_->size);
      }
      round.calls[rank_] = std::move(call);
      round.arrived[rank_] = true;
      round.works[rank_] = work;
      if (++round.count < hub_->size) return work;
      ready = std::move(round);
      hub_->rounds.erase(seq);
    }
    std::exception_ptr error;
    try {
      perform(ready, hub_->size, seq);
    } catch (...) {
      error = std::current_exception();
    }
    for (auto& w : ready.works) w->finish(error);
    return work;
  }

  std::shared_ptr<Hub> hub_;
  int rank_;
  uint64_t seq_ = 0;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> makeLocalGroup(int size,
                                                          const CollectiveOptions& options) {
  CDL_CHECK(size >= 1, "makeLocalGroup: size ", size, " must be >= 1");
  auto hub = std::make_shared<Hub>(size, options);
  std::vector<std::shared_ptr<Communicator>> group;
  for (int r = 0; r < size; ++r) group.push_back(std::make_shared<LocalCommunicator>(hub, r));
  return group;
}

}  // namespace cdl::comm
