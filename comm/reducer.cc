#include "comm/reducer.h"

#include <ATen/ops/empty_like.h>
#include <fnmatch.h>

#include <cstring>
#include <sstream>

#include "kernels/error.h"
#include "kernels/rng.h"

namespace cdl::comm {
namespace {

std::string shapeString(const at::Tensor& t) {
  std::ostringstream os;
  os << "[";
  for (int64_t d = 0; d < t.dim(); ++d) os << (d ? ", " : "") << t.size(d);
  os << "]";
  return os.str();
}

std::vector<std::string> splitLines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

}  // namespace

Reducer::Reducer(std::shared_ptr<Communicator> comm,
                 std::vector<std::pair<std::string, at::Tensor>> params, ReducerOptions options)
    : comm_(std::move(comm)), options_(std::move(options)) {
  CDL_CHECK(comm_ != nullptr, "reducer: null communicator");
  CDL_CHECK(options_.bucketBytes >= 4 && options_.firstBucketBytes >= 4,
            "reducer: bucket sizes must be at least one float");
  for (int i = 0; i < kNumCodecIds; ++i) codecs_.push_back(makeCodec(static_cast<CodecId>(i)));
  for (auto& [name, tensor] : params) {
    CDL_CHECK(tensor.defined(), "reducer: parameter '", name, "' is undefined");
    CDL_CHECK(tensor.scalar_type() == at::kFloat, "reducer: parameter '", name,
              "' is not float32 (", tensor.scalar_type(), ")");
    CDL_CHECK(tensor.device().is_cpu(), "reducer: parameter '", name, "' is on ", tensor.device(),
              "; this reducer reduces CPU tensors");
    CDL_CHECK(byName_.emplace(name, static_cast<int>(params_.size())).second,
              "reducer: parameter name '", name, "' appears twice");
    Param p;
    p.name = name;
    p.tensor = tensor;
    p.numel = tensor.numel();
    p.codec = options_.codec;
    for (const auto& [pattern, spec] : options_.overrides) {
      if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
        p.codec = spec;
        break;
      }
    }
    if (p.numel < options_.minCompressNumel) p.codec = CodecSpec{};
    params_.push_back(std::move(p));
  }
  layOut();
  checkConsistency();
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
  // Reverse registration order: the last layers' gradients are ready first.
  for (int i = static_cast<int>(params_.size()) - 1; i >= 0; --i) {
    Param& p = params_[i];
    const std::string spec = formatCodecSpec(p.codec);
    const int64_t bytes = 4 * p.numel;
    bool fresh = buckets_.empty() || formatCodecSpec(buckets_.back().codec) != spec;
    if (!fresh) {
      const int64_t cap = buckets_.size() == 1 ? options_.firstBucketBytes : options_.bucketBytes;
      fresh = 4 * static_cast<int64_t>(buckets_.back().data.size()) + bytes > cap;
    }
    if (fresh) {
      buckets_.emplace_back();
      buckets_.back().codec = p.codec;
    }
    Bucket& b = buckets_.back();
    p.bucket = static_cast<int>(buckets_.size()) - 1;
    p.offset = static_cast<int64_t>(b.data.size());
    b.params.push_back(i);
    b.data.resize(b.data.size() + static_cast<size_t>(p.numel));
  }
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int>(b.params.size());
    if (options_.errorFeedback) b.residual.assign(b.data.size(), 0.0f);
  }
  bucketReady_.assign(buckets_.size(), false);
}

void Reducer::checkConsistency() {
  std::ostringstream os;
  for (const Param& p : params_) {
    os << p.name << " " << shapeString(p.tensor) << " " << formatCodecSpec(p.codec) << "\n";
  }
  const std::string mine = os.str();
  Bytes send(mine.begin(), mine.end()), all;
  std::vector<size_t> sizes;
  auto work = comm_->allgatherv(send, &all, &sizes);
  if (options_.timeoutSeconds > 0) {
    work->wait(std::chrono::duration<double>(options_.timeoutSeconds));
  } else {
    work->wait();
  }
  std::vector<std::vector<std::string>> lines;
  size_t off = 0;
  for (size_t r = 0; r < sizes.size(); ++r) {
    lines.push_back(splitLines(std::string(all.begin() + off, all.begin() + off + sizes[r])));
    off += sizes[r];
  }
  for (size_t r = 1; r < lines.size(); ++r) {
    const size_t n = std::max(lines[0].size(), lines[r].size());
    for (size_t i = 0; i < n; ++i) {
      const std::string a = i < lines[0].size() ? lines[0][i] : "(none)";
      const std::string b = i < lines[r].size() ? lines[r][i] : "(none)";
      CDL_CHECK(a == b, "reducer: parameter #", i, " differs between ranks: rank 0 has '", a,
                "', rank ", r, " has '", b,
                "'; every rank must build the same model with the same codec settings");
    }
  }
}

void Reducer::onGradient(int index, const at::Tensor& grad) {
  Param& p = params_[index];
  CDL_CHECK(grad.scalar_type() == at::kFloat && grad.device().is_cpu() && grad.numel() == p.numel,
            "reducer: gradient of '", p.name, "' is not a CPU float32 tensor of ", p.numel,
            " elements");
  {
    std::lock_guard<std::mutex> lock(mu_);
    CDL_CHECK(!p.ready, "reducer: '", p.name,
              "' got a second gradient before finalize(); call finalize() after every backward");
    p.ready = true;
  }
  // The bucket is not in flight while one of its gradients is missing, so the copy needs no lock.
  const at::Tensor g = grad.contiguous();
  std::memcpy(buckets_[p.bucket].data.data() + p.offset, g.data_ptr<float>(),
              static_cast<size_t>(p.numel) * sizeof(float));
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
  const int nb = static_cast<int>(buckets_.size());
  while (true) {
    int b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || (!stepDone_ && nextBucket_ < nb && bucketReady_[nextBucket_]);
      });
      if (stop_) return;
      b = nextBucket_;
    }
    Bucket& bucket = buckets_[b];
    AllreduceStats st;
    std::exception_ptr error;
    try {
      LayerRate rate = bucket.codec.rate;
      rate.key = kernels::roundingKey(options_.seed, step_, static_cast<uint64_t>(b));
      CompressedAllreduceOptions opt;
      opt.average = true;
      opt.residual = bucket.residual.empty() ? nullptr : bucket.residual.data();
      opt.timeoutSeconds = options_.timeoutSeconds;
      compressedAllreduce(*comm_, *codecs_[static_cast<int>(bucket.codec.codec)], rate,
                          bucket.data.data(), static_cast<int64_t>(bucket.data.size()), opt, &st);
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

void Reducer::finalize() {
  std::unique_lock<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
  // Parameters without a gradient this step (unused in the forward pass) count as zero.
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    Param& p = params_[i];
    if (p.ready) continue;
    p.ready = true;
    std::fill_n(buckets_[p.bucket].data.data() + p.offset, p.numel, 0.0f);
    markReadyLocked(i);
  }
  cv_.notify_all();
  cv_.wait(lock, [&] { return stepDone_ || buckets_.empty(); });
  if (error_) std::rethrow_exception(error_);
  for (Param& p : params_) {
    at::Tensor& grad = p.tensor.mutable_grad();
    if (!grad.defined() || !grad.is_contiguous() || grad.scalar_type() != at::kFloat) {
      grad = at::empty_like(p.tensor, at::MemoryFormat::Contiguous);
    }
    std::memcpy(grad.data_ptr<float>(), buckets_[p.bucket].data.data() + p.offset,
                static_cast<size_t>(p.numel) * sizeof(float));
    p.ready = false;
  }
  for (Bucket& b : buckets_) b.pending = static_cast<int>(b.params.size());
  std::fill(bucketReady_.begin(), bucketReady_.end(), false);
  stats_ = std::move(running_);
  running_ = ReducerStepStats{};
  nextBucket_ = 0;
  stepDone_ = false;
  ++step_;
}

const CodecSpec& Reducer::codecOf(const std::string& name) const {
  auto it = byName_.find(name);
  CDL_CHECK(it != byName_.end(), "reducer: no parameter named '", name, "'");
  return params_[it->second].codec;
}

std::map<std::string, std::vector<float>> Reducer::errorFeedbackState() const {
  std::map<std::string, std::vector<float>> out;
  for (const Param& p : params_) {
    const Bucket& b = buckets_[p.bucket];
    out[p.name] = b.residual.empty() ? std::vector<float>()
                                     : std::vector<float>(b.residual.begin() + p.offset,
                                                          b.residual.begin() + p.offset + p.numel);
  }
  return out;
}

void Reducer::restoreErrorFeedback(const std::map<std::string, std::vector<float>>& state) {
  for (const auto& [name, values] : state) {
    CDL_CHECK(byName_.count(name), "reducer: saved error feedback names unknown tensor '", name,
              "'");
  }
  for (Param& p : params_) {
    auto it = state.find(p.name);
    CDL_CHECK(it != state.end(), "reducer: saved error feedback lacks tensor '", p.name, "'");
    Bucket& b = buckets_[p.bucket];
    const size_t want = b.residual.empty() ? 0 : static_cast<size_t>(p.numel);
    CDL_CHECK(it->second.size() == want, "reducer: saved error feedback of '", p.name, "' has ",
              it->second.size(), " values, expected ", want);
    std::copy(it->second.begin(), it->second.end(), b.residual.begin() + p.offset);
  }
}

}  // namespace cdl::comm
