#include "comm/reduce/reducer.h"

#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "comm/reduce/bucket_layout.h"
#include "comm/reduce/replica_check.h"
#include "kernels/base/error.h"

namespace cdl::comm {
namespace {

std::string shapeString(const at::Tensor& t) {
  std::ostringstream os;
  os << "[";
  for (int64_t d = 0; d < t.dim(); ++d) os << (d ? ", " : "") << t.size(d);
  os << "]";
  return os.str();
}

}  // namespace

Reducer::Reducer(std::shared_ptr<Communicator> comm,
                 std::vector<std::pair<std::string, at::Tensor>> params, ReducerOptions options)
    : comm_(std::move(comm)), options_(std::move(options)) {
  CDL_CHECK(comm_ != nullptr, "reducer: null communicator");
  CDL_CHECK(comm_->memory() == MemoryKind::kHost,
            "reducer: this reducer reduces CPU tensors, but the communicator takes device memory");
  for (auto& [name, tensor] : params) {
    CDL_CHECK(tensor.defined(), "reducer: parameter '", name, "' is undefined");
    CDL_CHECK(tensor.scalar_type() == at::kFloat, "reducer: parameter '", name,
              "' is not float32 (", tensor.scalar_type(), ")");
    CDL_CHECK(tensor.device() == params.front().second.device(), "reducer: parameter '", name,
              "' is on ", tensor.device(), " and '", params.front().first, "' on ",
              params.front().second.device(), "; a reducer's parameters share one device");
    CDL_CHECK(byName_.emplace(name, static_cast<int>(params_.size())).second,
              "reducer: parameter name '", name, "' appears twice");
    Param p;
    p.name = name;
    p.tensor = tensor;
    p.numel = tensor.numel();
    p.scheme = options_.scheme;
    for (const auto& [pattern, spec] : options_.overrides) {
      if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
        p.scheme = spec;
        break;
      }
    }
    if (p.numel < options_.minCompressNumel) p.scheme = SchemeSpec{};
    params_.push_back(std::move(p));
  }
  layOut();
  checkReplicas();
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    if (!params_[i].tensor.requires_grad()) continue;
    params_[i].hook =
        params_[i].tensor.register_hook([this, i](const at::Tensor& grad) { onGradient(i, grad); });
    params_[i].hooked = true;
  }
  thread_ = std::thread([this] { commLoop(); });
}

Reducer::~Reducer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (Param& p : params_) {
    if (p.hooked) p.tensor.remove_hook(p.hook);
  }
}

void Reducer::layOut() {
  std::vector<LayoutParam> layout;
  for (const Param& p : params_) layout.push_back({p.numel, formatSchemeSpec(p.scheme)});
  SchemeOptions so;
  so.errorFeedback = options_.errorFeedback;
  so.seed = options_.seed;
  so.timeoutSeconds = options_.timeoutSeconds;
  for (const BucketLayout& l :
       layOutBuckets(layout, options_.firstBucketBytes, options_.bucketBytes)) {
    Bucket& b = buckets_.emplace_back();
    std::vector<BucketTensor> tensors;
    for (size_t k = 0; k < l.params.size(); ++k) {
      Param& p = params_[static_cast<size_t>(l.params[k])];
      p.bucket = static_cast<int>(buckets_.size()) - 1;
      p.offset = l.offsets[k];
      b.params.push_back(l.params[k]);
      const int64_t rows = p.tensor.dim() == 0 ? 1 : p.tensor.size(0);
      tensors.push_back({p.name, l.params[k], p.offset, rows, rows > 0 ? p.numel / rows : 0});
    }
    b.data.resize(static_cast<size_t>(l.numel));
    b.pending = static_cast<int>(b.params.size());
    b.scheme = makeScheme(params_[static_cast<size_t>(l.params[0])].scheme, std::move(tensors), so);
  }
  bucketReady_.assign(buckets_.size(), false);
}

void Reducer::checkReplicas() {
  std::vector<std::string> items;
  for (const Param& p : params_) {
    items.push_back(p.name + " " + shapeString(p.tensor) + " " + formatSchemeSpec(p.scheme));
  }
  requireSameOnEveryRank(*comm_, items, "reducer: parameter",
                         "every rank must build the same model with the same codec settings",
                         options_.timeoutSeconds);
}

void Reducer::onGradient(int index, const at::Tensor& grad) {
  Param& p = params_[index];
  CDL_CHECK(grad.scalar_type() == at::kFloat && grad.device() == p.tensor.device() &&
                grad.numel() == p.numel,
            "reducer: gradient of '", p.name, "' is not a float32 tensor of ", p.numel,
            " elements on ", p.tensor.device());
  int arrived = 0;
  bool last = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    CDL_CHECK(!p.ready, "reducer: '", p.name, "' got more than ", backwardsPerStep_,
              " gradient(s) before finalize(); call finalize() after every step's backward passes");
    arrived = p.arrived++;
    p.ready = last = p.arrived == backwardsPerStep_;
  }
  // The bucket is not in flight while one of its gradients is missing, so the copy needs no lock.
  // A device gradient is staged through host memory (Note [Training device]).
  const at::Tensor g = grad.device().is_cpu() ? grad.contiguous() : grad.to(at::kCPU).contiguous();
  float* dst = buckets_[p.bucket].data.data() + p.offset;
  const float* src = g.data_ptr<float>();
  if (arrived == 0) {
    std::memcpy(dst, src, static_cast<size_t>(p.numel) * sizeof(float));
  } else {
    for (int64_t i = 0; i < p.numel; ++i) dst[i] += src[i];
  }
  if (options_.checkFinite && last) {
    // x - x is 0 for every finite x and NaN for NaN and infinity; the sum is NaN when any is.
    float probe = 0.0f;
    for (int64_t i = 0; i < p.numel; ++i) probe += dst[i] - dst[i];
    if (probe != 0.0f) {
      std::fill_n(dst, p.numel, 0.0f);
      std::lock_guard<std::mutex> lock(mu_);
      if (nonFinite_.empty()) nonFinite_ = p.name;
    }
  }
  if (!last) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    markReadyLocked(index);
  }
  cv_.notify_all();
}

void Reducer::markReadyLocked(int index) {
  Bucket& b = buckets_[params_[index].bucket];
  if (--b.pending == 0) bucketReady_[params_[index].bucket] = true;
}

void Reducer::commLoop() {
  while (true) {
    int b, nb;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        const int n = static_cast<int>(buckets_.size());
        return stop_ || (!stepDone_ && nextBucket_ < n && bucketReady_[nextBucket_]);
      });
      if (stop_) return;
      b = nextBucket_;
      nb = static_cast<int>(buckets_.size());
    }
    AllreduceStats st;
    std::exception_ptr error;
    try {
      reduceBucket(b, &st);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_.buckets.push_back(st);
      running_.wireBytes += st.wireBytes;
      running_.fp32Bytes += st.fp32Bytes;
      running_.encodeSeconds += st.encodeSeconds;
      running_.commSeconds += st.commSeconds;
      running_.decodeSeconds += st.decodeSeconds;
      ++nextBucket_;
      if (error) {
        // Stop issuing collectives this step: the peers' waits time out and report it too.
        error_ = error;
        stepDone_ = true;
      } else if (nextBucket_ == nb) {
        stepDone_ = true;
      }
    }
    cv_.notify_all();
  }
}

void Reducer::reduceBucket(int b, AllreduceStats* st) {
  Bucket& bucket = buckets_[static_cast<size_t>(b)];
  if (capture_) captureBucket(b);
  bucket.scheme->reduce(*comm_, bucket.data.data(), b, step_, st);
}

void Reducer::captureBucket(int b) {
  const Bucket& bucket = buckets_[static_cast<size_t>(b)];
  SchemeState residuals;
  bucket.scheme->saveState(&residuals);
  for (int i : bucket.params) {
    const Param& p = params_[static_cast<size_t>(i)];
    if (p.numel < options_.minCompressNumel) continue;
    std::vector<float>& sum = captured_[p.name];
    sum.resize(static_cast<size_t>(p.numel), 0.0f);
    const float* g = bucket.data.data() + p.offset;
    const std::vector<float>& r = residuals[p.name]["residual"];
    for (int64_t j = 0; j < p.numel; ++j) sum[j] += g[j] + (r.empty() ? 0.0f : r[j]);
  }
}

void Reducer::finalize() {
  std::unique_lock<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
  // Parameters without a gradient this step (unused in the forward pass) count as zero.
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    Param& p = params_[i];
    if (p.ready) continue;
    p.ready = true;
    if (p.arrived == 0) std::fill_n(buckets_[p.bucket].data.data() + p.offset, p.numel, 0.0f);
    markReadyLocked(i);
  }
  cv_.notify_all();
  cv_.wait(lock, [&] { return stepDone_ || buckets_.empty(); });
  if (error_) std::rethrow_exception(error_);
  running_.nonFinite = std::move(nonFinite_);
  nonFinite_.clear();
  if (options_.checkFinite) {
    std::vector<float> flag{running_.nonFinite.empty() ? 0.0f : 1.0f};
    lock.unlock();
    comm_->allreduce(flag.data(), 1)->wait();
    lock.lock();
    running_.nonFiniteRanks = static_cast<int>(flag[0]);
  }
  for (Param& p : params_) {
    at::Tensor& grad = p.tensor.mutable_grad();
    if (!grad.defined() || !grad.is_contiguous() || grad.scalar_type() != at::kFloat) {
      grad = at::empty_like(p.tensor, at::MemoryFormat::Contiguous);
    }
    float* averaged = buckets_[p.bucket].data.data() + p.offset;
    if (grad.device().is_cpu()) {
      std::memcpy(grad.data_ptr<float>(), averaged, static_cast<size_t>(p.numel) * sizeof(float));
    } else {
      grad.view({-1}).copy_(at::from_blob(averaged, {p.numel}, at::kFloat));
    }
    p.ready = false;
    p.arrived = 0;
  }
  for (Bucket& b : buckets_) b.pending = static_cast<int>(b.params.size());
  std::fill(bucketReady_.begin(), bucketReady_.end(), false);
  stats_ = std::move(running_);
  running_ = ReducerStepStats{};
  if (capture_) ++capturedSteps_;
  nextBucket_ = 0;
  stepDone_ = false;
  ++step_;
}

void Reducer::setStep(uint64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  CDL_CHECK(nextBucket_ == 0 && std::none_of(params_.begin(), params_.end(),
                                             [](const Param& p) { return p.ready; }),
            "reducer: setStep() in the middle of a step");
  step_ = step;
}

void Reducer::setBackwardsPerStep(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  CDL_CHECK(n >= 1, "reducer: ", n, " backward passes per step; at least 1");
  CDL_CHECK(nextBucket_ == 0 && std::none_of(params_.begin(), params_.end(),
                                             [](const Param& p) { return p.arrived > 0; }),
            "reducer: setBackwardsPerStep() in the middle of a step");
  backwardsPerStep_ = n;
}

const SchemeSpec& Reducer::schemeOf(const std::string& name) const {
  auto it = byName_.find(name);
  CDL_CHECK(it != byName_.end(), "reducer: no parameter named '", name, "'");
  return params_[static_cast<size_t>(it->second)].scheme;
}

SchemeState Reducer::schemeState() const {
  SchemeState out;
  for (const Bucket& b : buckets_) b.scheme->saveState(&out);
  return out;
}

void Reducer::restoreSchemeState(const SchemeState& state) {
  for (const auto& [name, fields] : state) {
    CDL_CHECK(byName_.count(name), "reducer: the saved state names unknown tensor '", name, "'");
  }
  for (const Param& p : params_) {
    CDL_CHECK(state.count(p.name), "reducer: the saved state lacks tensor '", p.name, "'");
  }
  // Check everything before changing anything.
  for (const Bucket& b : buckets_) b.scheme->checkState(state);
  for (Bucket& b : buckets_) b.scheme->loadState(state);
}

std::vector<Reducer::Plannable> Reducer::plannable() const {
  std::vector<Plannable> out;
  for (const Param& p : params_) {
    if (p.numel < options_.minCompressNumel) continue;
    const int64_t rows = p.tensor.dim() == 0 ? 1 : p.tensor.size(0);
    out.push_back({p.name, rows, rows > 0 ? p.numel / rows : 0});
  }
  return out;
}

void Reducer::setCapture(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  if (on && !capture_) {
    captured_.clear();
    capturedSteps_ = 0;
  }
  capture_ = on;
}

void Reducer::setCaptured(std::map<std::string, std::vector<float>> sums, int64_t steps) {
  for (const auto& [name, sum] : sums) {
    auto it = byName_.find(name);
    CDL_CHECK(it != byName_.end(), "reducer: captured gradients of unknown tensor '", name, "'");
    CDL_CHECK(static_cast<int64_t>(sum.size()) == params_[it->second].numel,
              "reducer: captured gradients of '", name, "' have ", sum.size(), " values, expected ",
              params_[it->second].numel);
  }
  std::lock_guard<std::mutex> lock(mu_);
  captured_ = std::move(sums);
  capturedSteps_ = steps;
}

void Reducer::setSchemes(const std::map<std::string, SchemeSpec>& schemes) {
  for (const auto& [name, spec] : schemes) {
    CDL_CHECK(byName_.count(name), "reducer: a plan names unknown tensor '", name, "'");
  }
  std::lock_guard<std::mutex> lock(mu_);
  CDL_CHECK(nextBucket_ == 0 && std::none_of(params_.begin(), params_.end(),
                                             [](const Param& p) { return p.ready; }),
            "reducer: setSchemes() in the middle of a step");
  SchemeState state;
  for (const Bucket& b : buckets_) b.scheme->saveState(&state);
  for (Param& p : params_) {
    auto it = schemes.find(p.name);
    if (it == schemes.end() || p.numel < options_.minCompressNumel) continue;
    const int64_t rows = p.tensor.dim() == 0 ? 1 : p.tensor.size(0);
    adaptSchemeState(p.scheme, it->second, rows > 0 ? p.numel / rows : 0,
                     powerSgdSeed(options_.seed, static_cast<int>(&p - params_.data())),
                     state[p.name]);
    p.scheme = it->second;
  }
  buckets_.clear();
  layOut();
  for (const Bucket& b : buckets_) b.scheme->checkState(state);
  for (Bucket& b : buckets_) b.scheme->loadState(state);
  checkReplicas();
}

}  // namespace cdl::comm
