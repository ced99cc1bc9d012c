// Communicator over MPI: each call posts non-blocking MPI requests; Work::wait drives them with
// MPI_Test, so a peer that never joins turns into a timeout error instead of a hang.
#include "comm/transport/mpi/mpi_communicator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/transport/ring_allreduce.h"
#include "comm/transport/tcp/peer_status.h"
#include "comm/transport/tcp/tcp_channel.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/base/knobs.h"

namespace cdl::comm {

// Note [Collective order]
// MPI matches nonblocking collectives on a communicator by the order they are called in, so every
// MPI collective call must come in the same order on every rank. Works progress in phases when
// polled, and ranks poll their works in flight in different orders, so a collective called at a
// phase change could overtake, on one rank only, one issued after it. Hence only the first phase
// of a Work calls MPI collectives (at the call, in issue order); later phases move their bytes
// point to point, tagged with the collective's number (alltoallv, allgatherv), and a broadcast
// waits for its length within the call.

// Note [Abandoned MPI operations]
// An MPI request that is given up on (its wait timed out, or its Work went away unfinished) can
// be neither cancelled nor freed safely: MPI forbids both for nonblocking collectives, cancelling
// sends is deprecated, and a freed request still completes later, writing into receive buffers
// and reading send buffers that the failed step's unwinding is about to release. So cdl fences
// MPI instead, for the whole process: the first operation abandoned with requests in flight sets
// the fence (one with none just fails), its requests are kept (never freed, never tested), and
// from then on no cdl call enters MPI again: every MPI communicator call and every poll of an
// operation in flight fails at once with an error naming the abandoned operation, communicators
// are not freed, and finalizeMpi() aborts the job rather than let MPI_Finalize progress (or wait
// for) the abandoned requests. Nothing in MPI
// progresses them any more, so buffers may go, and no later collective can match a peer's
// earlier one and return a silently wrong sum. The process can only end (cdl-train aborts the
// job with the error); NCCL communicators do the same per communicator with ncclCommAbort.
namespace {

struct Fence {
  std::mutex mu;
  std::atomic<bool> set{false};
  std::string first;                   // what was abandoned first
  std::vector<MPI_Request> abandoned;  // kept, never freed: MPI may still own them
};

Fence& fence() {
  static Fence* f = new Fence();  // never destroyed: requests outlive static destructors
  return *f;
}

// Fences MPI when any of the requests is still live; an operation with none in flight (between
// its phases, or before its first posted anything) is dropped without one.
void abandonRequests(const std::string& what, std::vector<MPI_Request>& requests) {
  Fence& f = fence();
  std::lock_guard<std::mutex> lock(f.mu);
  for (MPI_Request r : requests) {
    if (r == MPI_REQUEST_NULL) continue;
    if (!f.set.load()) f.first = what;
    f.set.store(true);
    f.abandoned.push_back(r);
  }
  requests.clear();
}

[[noreturn]] void throwFenced() {
  std::string first;
  {
    std::lock_guard<std::mutex> lock(fence().mu);
    first = fence().first;
  }
  CDL_THROW("MPI can no longer be used in this process: ", first,
            " was abandoned with requests in flight (a timeout or a failed step), and MPI could "
            "still write into their buffers; end the process");
}

void checkFence() {
  if (fence().set.load()) throwFenced();
}

}  // namespace

bool mpiFenced() { return fence().set.load(); }

void abortMpi(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  std::thread([code] {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::fprintf(stderr,
                 "[rank %d] MPI_Abort has not ended this process within 1 s (its MPI daemon may be "
                 "cut off); exiting\n",
                 currentRank());
    std::fflush(stderr);
    std::_Exit(code);
  }).detach();
  MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace cdl::comm

namespace cdl::comm {

void initMpi(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = 0;
  if (!initialized) {
    CDL_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
  } else {
    MPI_Query_thread(&provided);
  }
  CDL_CHECK(provided >= MPI_THREAD_MULTIPLE, "MPI provides thread level ", provided,
            " but cdl needs MPI_THREAD_MULTIPLE; use an MPI built with thread support");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  setProcessRank(rank);
}

void finalizeMpi() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  if (mpiFenced()) {
    // MPI_Finalize would progress the abandoned requests, or wait for them forever.
    std::fprintf(stderr,
                 "[rank %d] MPI operations were abandoned; ending the job instead of "
                 "finalizing MPI\n",
                 currentRank());
    abortMpi(3);
  }
  MPI_Finalize();
}

namespace {

// Note [Progress in flight]
// A Work's later phases start only when it is polled, so two ranks that wait for their Works in
// flight in different orders could each wait for a phase the other has not started. So polling
// one of a communicator's Works advances all of them in flight: the communicator keeps them
// (InFlight), and each poll first polls the others. One thread does so at a time (another that
// finds it busy goes on with its own Work), and not from within itself.
class InFlight {
 public:
  void add(const std::shared_ptr<Work>& w) {
    std::lock_guard<std::mutex> lock(mu_);
    works_.erase(std::remove_if(works_.begin(), works_.end(),
                                [](const std::weak_ptr<Work>& x) { return x.expired(); }),
                 works_.end());
    works_.push_back(w);
  }
  void progress(const Work* self) {
    thread_local bool inside = false;
    if (inside) return;
    std::unique_lock<std::mutex> turn(turnMu_, std::try_to_lock);
    if (!turn.owns_lock()) return;
    std::vector<std::shared_ptr<Work>> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const std::weak_ptr<Work>& x : works_) {
        if (auto w = x.lock(); w && w.get() != self) live.push_back(std::move(w));
      }
    }
    inside = true;
    for (const auto& w : live) {
      try {
        w->completed();
      } catch (...) {  // the Work's own wait() reports it
      }
    }
    inside = false;
  }

 private:
  std::mutex mu_, turnMu_;
  std::vector<std::weak_ptr<Work>> works_;
};

// A Work made of phases: each phase posts requests; the next one starts when they complete.
// With `inflight`, polling it advances the communicator's other Works too (Note [Progress in
// flight]).
class MpiWork : public Work {
 public:
  using Phase = std::function<void(std::vector<MPI_Request>&)>;

  MpiWork(std::string what, std::vector<Phase> phases, std::shared_ptr<InFlight> inflight = nullptr)
      : Work(std::move(what)), phases_(std::move(phases)), inflight_(std::move(inflight)) {
    checkFence();
    advance();
  }
  ~MpiWork() override { abandon(); }

  void abandon() override {
    {
      std::lock_guard<std::mutex> lock(pollMu_);
      if (finished_) return;
      finished_ = true;
      abandonRequests(what(), requests_);
    }
    finishAbandoned();
  }
  bool polled() const override { return true; }

 protected:
  bool poll() override {
    if (inflight_) inflight_->progress(this);
    std::lock_guard<std::mutex> lock(pollMu_);
    if (finished_) return true;
    try {
      checkFence();  // once fenced, no request is tested again
      while (true) {
        int flag = 0;
        if (!requests_.empty()) {
          CDL_MPI_CHECK(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &flag,
                                    MPI_STATUSES_IGNORE));
          if (!flag) return false;
        }
        requests_.clear();
        if (next_ == phases_.size()) break;
        advance();
      }
      finished_ = true;
      finish();
    } catch (...) {
      finished_ = true;
      finish(std::current_exception());
    }
    return true;
  }

 private:
  void advance() { phases_[next_++](requests_); }

  std::vector<Phase> phases_;
  size_t next_ = 0;
  std::vector<MPI_Request> requests_;
  std::mutex pollMu_;
  bool finished_ = false;
  std::shared_ptr<InFlight> inflight_;
};

// A Work of another kind (the ring's phases of sendRecvs) whose polls advance the communicator's
// Works in flight first, as MpiWork's do.
class ProgressingWork : public Work {
 public:
  ProgressingWork(std::shared_ptr<Work> inner, std::shared_ptr<InFlight> inflight)
      : Work(inner->what()), inner_(std::move(inner)), inflight_(std::move(inflight)) {}
  void abandon() override {
    inner_->abandon();
    finishAbandoned();
  }
  bool polled() const override { return true; }
  bool idle(std::chrono::microseconds most) override { return inner_->idle(most); }

 protected:
  bool poll() override {
    inflight_->progress(this);
    if (!inner_->completed()) return false;
    try {
      inner_->wait(std::chrono::duration<double>(0));  // completed: rethrows its failure
      finish();
    } catch (const Error& e) {  // a step's failure (a link that broke) names the collective
      try {
        CDL_THROW(what(), " failed: ", errorBody(e.what()));
      } catch (...) {
        finish(std::current_exception());
      }
    } catch (...) {
      finish(std::current_exception());
    }
    return true;
  }

 private:
  std::shared_ptr<Work> inner_;
  std::shared_ptr<InFlight> inflight_;
};

int checkedInt(size_t v, const char* what) {
  CDL_CHECK(v <= static_cast<size_t>(INT_MAX), what, ": ", v,
            " bytes exceed MPI's int count; split the buffer");
  return static_cast<int>(v);
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, const CollectiveOptions& options) : options_(options) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    CDL_CHECK(initialized, "MPI is not initialized; call cdl::comm::initMpi first");
    checkFence();
    CDL_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    if (size_ >= 2) openStatus();
    if (size_ >= 2 && knobChoice(kKnobTcpRing) == "on") openTcpRing();
    pinAllreduce();
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && !mpiFenced()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemoryKind memory() const override { return MemoryKind::kHost; }

  std::shared_ptr<Work> allreduce(float* data, int64_t n) override {
    CDL_CHECK(n >= 0 && (data != nullptr || n == 0), "allreduce: bad buffer (n = ", n, ")");
    // Every rank decides alike: the buffers of one collective have the same length everywhere,
    // and the measurement runs at the same collective on every rank with the same result.
    CollectiveOptions o = options_;
    if (o.ringMinFloats == kMeasuredRingMin) {
      if (ringMin_ < 0 && size_ > 2 && n >= kRingProbeFloats) measureRing();
      o.ringMinFloats = ringMin_ < 0 ? INT64_MAX : ringMin_;
    }
    if (useRing(o, size_, n)) return ring(data, n, "");
    return transportAllreduce(data, n, "");
  }

  std::string allreduceChoice() const override { return choice_; }

  std::shared_ptr<Work> allgatherv(const Bytes& send, Bytes* recv,
                                   std::vector<size_t>* sizes) override {
    checkedInt(send.size(), "allgatherv");
    auto counts = std::make_shared<std::vector<uint64_t>>(size_);
    auto mine = std::make_shared<uint64_t>(send.size());
    MPI_Comm comm = comm_;
    const int n = size_, me = rank_;
    const uint64_t seq = seq_++;
    const int tag = static_cast<int>(seq % kTagSpace);
    return track(
        seq,
        std::make_shared<MpiWork>(
            "allgatherv of " + std::to_string(send.size()) + " bytes" + where(seq),
            std::vector<MpiWork::Phase>{
                [=](std::vector<MPI_Request>& reqs) {
                  reqs.emplace_back();
                  CDL_MPI_CHECK(MPI_Iallgather(mine.get(), 1, MPI_UINT64_T, counts->data(), 1,
                                               MPI_UINT64_T, comm, &reqs.back()));
                },
                // Note [Collective order]: the payloads go point to point, tagged with the
                // collective's number, as alltoallv's do.
                [=, &send](std::vector<MPI_Request>& reqs) {
                  std::vector<size_t> at(static_cast<size_t>(n));
                  size_t total = 0;
                  for (int r = 0; r < n; ++r) {
                    checkedInt((*counts)[r], "allgatherv");
                    at[r] = total;
                    total += (*counts)[r];
                  }
                  sizes->assign(counts->begin(), counts->end());
                  recv->resize(total);
                  std::copy(send.begin(), send.end(),
                            recv->begin() + static_cast<ptrdiff_t>(at[me]));
                  for (int r = 0; r < n; ++r) {
                    if (r == me) continue;
                    reqs.emplace_back();
                    CDL_MPI_CHECK(MPI_Irecv(recv->data() + at[r], static_cast<int>((*counts)[r]),
                                            MPI_BYTE, r, tag, comm, &reqs.back()));
                  }
                  for (int k = 1; k < n; ++k) {
                    const int r = (me + k) % n;  // spread the sends, as alltoallv does
                    reqs.emplace_back();
                    CDL_MPI_CHECK(MPI_Isend(send.data(), static_cast<int>(send.size()), MPI_BYTE, r,
                                            tag, comm, &reqs.back()));
                  }
                }},
            inflight_));
  }

  std::shared_ptr<Work> alltoallv(const std::vector<Bytes>& send,
                                  std::vector<Bytes>* recv) override {
    CDL_CHECK(static_cast<int>(send.size()) == size_, "alltoallv: ", send.size(),
              " send buffers for ", size_, " ranks");
    struct State {
      std::vector<uint64_t> sendCounts, recvCounts;
    };
    auto st = std::make_shared<State>();
    st->sendCounts.resize(size_);
    st->recvCounts.resize(size_);
    for (int r = 0; r < size_; ++r) st->sendCounts[r] = send[r].size();
    MPI_Comm comm = comm_;
    const int n = size_, me = rank_;
    // Every rank issues collectives in the same order, so the sequence number is the same on all
    // of them; as the tag it keeps the messages of collectives in flight together apart.
    const uint64_t seq = seq_++;
    const int tag = static_cast<int>(seq % kTagSpace);
    return track(
        seq, std::make_shared<MpiWork>(
                 "alltoallv" + where(seq),
                 std::vector<MpiWork::Phase>{
                     [=](std::vector<MPI_Request>& reqs) {
                       reqs.emplace_back();
                       CDL_MPI_CHECK(MPI_Ialltoall(st->sendCounts.data(), 1, MPI_UINT64_T,
                                                   st->recvCounts.data(), 1, MPI_UINT64_T, comm,
                                                   &reqs.back()));
                     },
                     // The payloads go point to point, straight from the send buffers into the
                     // receive buffers (which keep their capacity from earlier calls).
                     [=, &send](std::vector<MPI_Request>& reqs) {
                       recv->resize(n);
                       for (int r = 0; r < n; ++r) {
                         const int count = checkedInt(st->recvCounts[r], "alltoallv");
                         checkedInt(st->sendCounts[r], "alltoallv");
                         (*recv)[r].resize(static_cast<size_t>(count));
                         if (r == me) {
                           std::copy(send[r].begin(), send[r].end(), (*recv)[r].begin());
                           continue;
                         }
                         reqs.emplace_back();
                         CDL_MPI_CHECK(MPI_Irecv((*recv)[r].data(), count, MPI_BYTE, r, tag, comm,
                                                 &reqs.back()));
                       }
                       for (int k = 1; k < n; ++k) {
                         const int r =
                             (me + k) % n;  // spread the sends: not everyone to rank 0 first
                         reqs.emplace_back();
                         CDL_MPI_CHECK(MPI_Isend(send[r].data(), static_cast<int>(send[r].size()),
                                                 MPI_BYTE, r, tag, comm, &reqs.back()));
                       }
                     }},
                 inflight_));
  }

  std::shared_ptr<Work> broadcast(Bytes* data, int root) override {
    CDL_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside ", size_, " ranks");
    // Past MPI's int count the root fails before it posts anything, the others before they
    // allocate what the root announced.
    if (rank_ == root) checkedInt(data->size(), "broadcast");
    auto len = std::make_shared<uint64_t>(data->size());
    MPI_Comm comm = comm_;
    // Note [Collective order]: the length is waited for here, so that the data's MPI_Ibcast too
    // is issued by the call and not whenever the Work happens to be polled.
    make("broadcast's length from rank " + std::to_string(root),
         {[=](std::vector<MPI_Request>& reqs) {
           reqs.emplace_back();
           CDL_MPI_CHECK(MPI_Ibcast(len.get(), 1, MPI_UINT64_T, root, comm, &reqs.back()));
         }})
        ->wait();
    const int count = checkedInt(*len, "broadcast");
    data->resize(*len);
    return make(
        "broadcast from rank " + std::to_string(root), {[=](std::vector<MPI_Request>& reqs) {
          reqs.emplace_back();
          CDL_MPI_CHECK(MPI_Ibcast(data->data(), count, MPI_BYTE, root, comm, &reqs.back()));
        }});
  }

  std::shared_ptr<Work> barrier() override {
    MPI_Comm comm = comm_;
    return make("barrier", {[=](std::vector<MPI_Request>& reqs) {
                  reqs.emplace_back();
                  CDL_MPI_CHECK(MPI_Ibarrier(comm, &reqs.back()));
                }});
  }

  std::shared_ptr<Work> sendRecv(const void* send, size_t sendBytes, int to, void* recv,
                                 size_t recvBytes, int from, uint64_t tag) override {
    CDL_CHECK(to >= 0 && to < size_ && from >= 0 && from < size_, "sendRecv: peers ", to, " and ",
              from, " outside ", size_, " ranks");
    checkFence();
    const std::string what = "sendRecv of " + std::to_string(sendBytes) + " bytes to rank " +
                             std::to_string(to) + " and " + std::to_string(recvBytes) +
                             " from rank " + std::to_string(from) + " (tag " + std::to_string(tag) +
                             " on rank " + std::to_string(rank_) + ")";
    // Note [TCP ring messages]: what goes to the next rank and comes from the previous one takes
    // the TCP links, by direction alone, so that both ends of every message agree.
    const bool tcpOut = tcp_ && to == (rank_ + 1) % size_ && to != rank_;
    const bool tcpIn = tcp_ && from == (rank_ + size_ - 1) % size_ && from != rank_;
    if (tcpOut && tcpIn) {
      return tcp_->exchange(send, sendBytes, true, recv, recvBytes, true, tag, what);
    }
    const int sendCount = checkedInt(sendBytes, "sendRecv"),
              recvCount = checkedInt(recvBytes, "sendRecv");
    const int mpiTag = static_cast<int>(tag % kTagSpace);
    MPI_Comm comm = comm_;
    auto mpi = std::make_shared<MpiWork>(
        what, std::vector<MpiWork::Phase>{[=](std::vector<MPI_Request>& reqs) {
          if (!tcpIn) {
            reqs.emplace_back();
            CDL_MPI_CHECK(MPI_Irecv(recv, recvCount, MPI_BYTE, from, mpiTag, comm, &reqs.back()));
          }
          if (!tcpOut) {
            reqs.emplace_back();
            CDL_MPI_CHECK(MPI_Isend(send, sendCount, MPI_BYTE, to, mpiTag, comm, &reqs.back()));
          }
        }});
    if (!tcpOut && !tcpIn) return mpi;
    auto tcp = tcp_->exchange(send, sendBytes, tcpOut, recv, recvBytes, tcpIn, tag, what);
    return std::make_shared<PhasedWork>(what, std::vector<PhasedWork::Phase>{[=] {
                                          return std::vector<std::shared_ptr<Work>>{tcp, mpi};
                                        }});
  }

 private:
  std::shared_ptr<Work> ring(float* data, int64_t n, const std::string& purpose) {
    const uint64_t seq = seq_++;
    return track(seq, std::make_shared<ProgressingWork>(
                          ringAllreduce(*this, data, n, seq,
                                        "allreduce of " + std::to_string(n) + " floats (ring" +
                                            purpose + ")" + where(seq)),
                          inflight_));
  }

  // Keeps w, collective number seq, among the Works in flight (Note [Progress in flight]), and
  // makes it answer and ask status queries (Note [Peer status]).
  std::shared_ptr<Work> track(uint64_t seq, std::shared_ptr<Work> w) {
    inflight_->add(w);
    if (statusLog_) {
      statusLog_->issued(w->what());
      w->explainMissingWith([peers = statusPeers_, id = statusId_, me = rank_, seq] {
        const auto budget = std::chrono::milliseconds(static_cast<int>(kStatusQuerySeconds * 1e3));
        return describeMissing(askPeers(*peers, me, id, budget), me, seq, kStatusQuerySeconds);
      });
    }
    return w;
  }

  // Note [Peer status]: every rank's status endpoint and the communicator's id, agreed on by all
  // ranks. A rank that cannot listen takes part with none (it is then named as not answering).
  // Collective.
  void openStatus() {
    Endpoint mine{};
    try {
      mine = statusEndpoint();
    } catch (const Error& e) {
      std::fprintf(stderr,
                   "[rank %d] %s; a collective that times out cannot name who it waits for\n",
                   rank_, errorBody(e.what()).c_str());
    }
    uint64_t id = rank_ == 0 ? randomNonce() : 0;
    auto peers = std::make_shared<std::vector<Endpoint>>(static_cast<size_t>(size_));
    CDL_MPI_CHECK(MPI_Bcast(&id, 1, MPI_UINT64_T, 0, comm_));
    CDL_MPI_CHECK(MPI_Allgather(&mine, sizeof(Endpoint), MPI_BYTE, peers->data(), sizeof(Endpoint),
                                MPI_BYTE, comm_));
    statusId_ = id;
    statusPeers_ = std::move(peers);
    statusLog_ = registerCollectiveLog(id, rank_);
  }

  std::shared_ptr<Work> transportAllreduce(float* data, int64_t n, const std::string& purpose) {
    MPI_Comm comm = comm_;
    return make("allreduce of " + std::to_string(n) + " floats" + purpose,
                {[=](std::vector<MPI_Request>& reqs) {
                  // MPI counts are ints: larger buffers go as several reductions (at least one,
                  // so that an empty buffer still matches its peers' call).
                  const int64_t chunks = std::max<int64_t>(1, (n + INT_MAX - 1) / INT_MAX);
                  for (int64_t c = 0; c < chunks; ++c) {
                    const int64_t off = c * INT_MAX;
                    const int count = static_cast<int>(std::min<int64_t>(INT_MAX, n - off));
                    reqs.emplace_back();
                    CDL_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data + off, count, MPI_FLOAT,
                                                 MPI_SUM, comm, &reqs.back()));
                  }
                }});
  }

  // Note [TCP ring messages]: connects the ring links, or leaves the messages on MPI (saying why in
  // ringTransport_) when any rank cannot. Collective.
  void openTcpRing() {
    TcpRingLinks links;
    std::string why;
    try {
      links = connectTcpRing(comm_, "TCP ring");
    } catch (const Error& e) {
      why = errorBody(e.what());
    }
    int ok = why.empty() ? 1 : 0, everywhere = 0;
    CDL_MPI_CHECK(MPI_Allreduce(&ok, &everywhere, 1, MPI_INT, MPI_MIN, comm_));
    if (everywhere) {
      tcp_ = std::make_unique<TcpChannel>(links, rank_, (rank_ + 1) % size_,
                                          (rank_ + size_ - 1) % size_);
      ringTransport_ = "TCP";
      return;
    }
    closeTcpRing(links);
    ringTransport_ =
        "MPI (" + (why.empty() ? "another rank could not connect over TCP" : why) + ")";
  }

  // Note [Allreduce choice]: CDL_ALLREDUCE=ring|mpi takes one algorithm at every size, unmeasured
  // (the fault tests need the ring's links in use); options that fix ringMinFloats win over it.
  void pinAllreduce() {
    const std::string pinned = knobChoice(kKnobAllreduce);
    if (options_.ringMinFloats != kMeasuredRingMin || pinned == "auto") return;
    options_.ringMinFloats = pinned == "ring" ? 1 : INT64_MAX;
    if (size_ > 2)
      choice_ =
          (pinned == "ring" ? "the ring at every size (its messages over " + ringTransport_ + "; "
                            : std::string("Open MPI's allreduce at every size (")) +
          "CDL_ALLREDUCE=" + pinned + ")";
  }

  // Note [Allreduce choice]: times Open MPI's allreduce and the ring at two sizes and sets
  // ringMin_ to where the ring becomes the faster.
  void measureRing() {
    const int64_t n1 = kRingProbeFloats, n2 = 8 * kRingProbeFloats;
    std::vector<float> buf(static_cast<size_t>(n2), 0.0f);
    const auto best = [&](bool useRingPath, int64_t n) {
      double fastest = 1e300;
      for (int rep = 0; rep < 4; ++rep) {  // the first opens the connections
        const auto t0 = std::chrono::steady_clock::now();
        const std::string purpose = " to choose the algorithm";
        (useRingPath ? ring(buf.data(), n, ", measured")
                     : transportAllreduce(buf.data(), n, purpose))
            ->wait();
        const double t =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (rep > 0) fastest = std::min(fastest, t);
      }
      return fastest;
    };
    double t[4] = {best(false, n1), best(false, n2), best(true, n1), best(true, n2)};
    checkFence();
    CDL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t, 4, MPI_DOUBLE, MPI_MAX, comm_));
    ringMin_ = ringCrossover(n1, n2, t[0], t[1], t[2], t[3]);
    char text[640];
    std::snprintf(text, sizeof(text),
                  "%s (measured on %d ranks, the ring's messages over %s: Open MPI's allreduce "
                  "%.0f us at %lld floats and %.0f us at %lld, the ring %.0f us and %.0f us)",
                  ringMin_ == INT64_MAX
                      ? "Open MPI's allreduce at every size"
                      : ("the ring from " + std::to_string(ringMin_) + " floats").c_str(),
                  size_, ringTransport_.c_str(), t[0] * 1e6, static_cast<long long>(n1), t[1] * 1e6,
                  static_cast<long long>(n2), t[2] * 1e6, t[3] * 1e6);
    choice_ = text;
  }

  std::string where(uint64_t seq) const {
    return " (collective #" + std::to_string(seq) + " on rank " + std::to_string(rank_) + " of " +
           std::to_string(size_) + ")";
  }

  // A collective: numbered in issue order, the same on every rank (the number is also the tag of
  // its point-to-point messages).
  std::shared_ptr<Work> make(const std::string& what, std::vector<MpiWork::Phase> phases) {
    const uint64_t seq = seq_++;
    return track(seq, std::make_shared<MpiWork>(what + where(seq), std::move(phases), inflight_));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  static constexpr uint64_t kTagSpace = 32768;  // MPI guarantees tags up to 32767
  CollectiveOptions options_;
  int rank_ = 0;
  int size_ = 1;
  std::atomic<uint64_t> seq_{0};  // collectives issued so far
  std::shared_ptr<InFlight> inflight_ = std::make_shared<InFlight>();
  int64_t ringMin_ = -1;               // measured (Note [Allreduce choice]); -1: not yet
  std::string choice_;                 // what the measurement found, for allreduceChoice()
  std::unique_ptr<TcpChannel> tcp_;    // Note [TCP ring messages]; null: over MPI
  std::string ringTransport_ = "MPI";  // what carries the ring's messages, for the choice's text
  // Note [Peer status]; no log: a single rank.
  std::shared_ptr<CollectiveLog> statusLog_;
  std::shared_ptr<const std::vector<Endpoint>> statusPeers_;
  uint64_t statusId_ = 0;
};

}  // namespace

std::shared_ptr<Communicator> makeMpiCommunicator(MPI_Comm comm, const CollectiveOptions& options) {
  return std::make_shared<MpiCommunicator>(comm, options);
}

}  // namespace cdl::comm
