#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace cdl::comm {

// An operation in flight (a collective, a bucket's reduction). Whoever runs it calls finish(),
// with the error if it failed; whoever waits gets that error rethrown. A wait that outlasts its
// timeout throws a cdl::Error naming the operation and, where known, the ranks it is waiting for,
// so a job never hangs silently.
class Work {
 public:
  explicit Work(std::string what) : what_(std::move(what)) {}
  virtual ~Work() = default;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  // Waits up to CDL_COMM_TIMEOUT seconds (Note [Knobs]).
  void wait();
  // Waits up to `timeout` (zero or less: forever). Rethrows the operation's error. Past the
  // timeout it abandons the operation (abandon()) and throws: a timeout is final.
  void wait(std::chrono::duration<double> timeout);
  // Waits up to `timeout` and returns whether the operation completed (rethrowing its error);
  // one still in flight stays so, to be waited for again.
  bool waitFor(std::chrono::duration<double> timeout);
  bool completed();

  // What the operation is, e.g. "allreduce of 1000 floats (collective #12)".
  const std::string& what() const { return what_; }

  // Marks the operation done; the first call wins.
  void finish(std::exception_ptr error = nullptr);

  // Sets what a timed-out wait asks for the ranks it waits for, beside missing(): a transport
  // that can ask its peers (Note [Peer status]) sets it when it issues the operation.
  void explainMissingWith(std::function<std::string()> explain) { explain_ = std::move(explain); }

  // Gives up on an operation that will not be waited for again (wait() calls it when it times
  // out): it fails everyone still waiting, and a transport that cannot take its requests back
  // makes sure nothing touches their buffers any more (Note [Abandoned MPI operations]). The
  // default, for operations that own what they touch, does nothing.
  virtual void abandon() {}

  // Whether the operation completes only as it is polled (see poll()).
  virtual bool polled() const { return false; }
  // For a polled operation: sleeps until it may progress, at most `most` (the sockets it waits on
  // become ready, a sub-operation completes), and returns true; or returns false at once where it
  // cannot tell, and wait() then polls in a yielding loop. Waiting this way between polls leaves
  // the core to ranks that share it.
  virtual bool idle(std::chrono::microseconds most) {
    (void)most;
    return false;
  }
  // Sleeps until the operation is done or `timeout` passes; neither polls nor rethrows.
  void sleepUntilDone(std::chrono::duration<double> timeout);

 protected:
  // Progress hook for operations that complete by polling (MPI requests, CUDA events): called by
  // wait() and completed() with no lock held; returns true once the operation is done (after
  // calling finish()). Such subclasses also return true from polled(), and wait() then drives
  // poll() in a yielding loop, as MPI's own blocking calls do. The default leaves completion to
  // finish() from another thread.
  virtual bool poll() { return false; }
  // Who the operation still waits for ("ranks 2, 3 have not joined"), when known.
  virtual std::string missing() const { return {}; }
  // For abandon(): fails the operation with "<what> was abandoned before it completed".
  void finishAbandoned();

 private:
  bool waitUntilDone(std::chrono::duration<double> timeout);  // false: still in flight

  std::string what_;
  std::function<std::string()> explain_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

// A Work made of phases run one after another: each phase starts operations (sub-Works, such as
// the sendRecv steps of a ring) and the next phase starts once all of them have completed. The
// first phase starts in the constructor; the others as the Work is polled (wait(), completed()).
// A phase or sub-Work that fails fails the whole Work with its error.
class PhasedWork : public Work {
 public:
  using Phase = std::function<std::vector<std::shared_ptr<Work>>()>;
  PhasedWork(std::string what, std::vector<Phase> phases);

 protected:
  bool poll() override;
  std::string missing() const override;

 public:
  bool polled() const override { return true; }
  void abandon() override;  // abandons the sub-Works in flight
  // Idles on the first sub-Work in flight: sleeps until one that completes by itself does, or
  // lets a polled one idle.
  bool idle(std::chrono::microseconds most) override;

 private:
  void start();  // runs phases_[next_], with pollMu_ held

  std::vector<Phase> phases_;
  size_t next_ = 0;
  std::vector<std::shared_ptr<Work>> pending_;
  mutable std::mutex pollMu_;
  bool finished_ = false;
};

}  // namespace cdl::comm
