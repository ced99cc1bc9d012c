#include "comm/reducer.h"

#include <ATen/ops/empty_like.h>
#include <fnmatch.h>

#include <algorithm>
#include <cmath>
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
    if (p.codec.codec == CodecId::kPowerSgd) {
      const int64_t rows = tensor.dim() == 0 ? 1 : tensor.size(0);
      p.powerSgd =
          std::make_unique<PowerSgdState>(name, rows, rows > 0 ? p.numel / rows : int64_t{0});
    }
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
    // PowerSGD keeps its residuals in the parameters' states.
    if (options_.errorFeedback && b.codec.codec != CodecId::kPowerSgd) {
      b.residual.assign(b.data.size(), 0.0f);
    }
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
  Bucket& bucket = buckets_[b];
  if (bucket.codec.codec != CodecId::kPowerSgd) {
    LayerRate rate = bucket.codec.rate;
    rate.key = kernels::roundingKey(options_.seed, step_, static_cast<uint64_t>(b));
    CompressedAllreduceOptions opt;
    opt.average = true;
    opt.residual = bucket.residual.empty() ? nullptr : bucket.residual.data();
    opt.timeoutSeconds = options_.timeoutSeconds;
    compressedAllreduce(*comm_, *codecs_[static_cast<int>(bucket.codec.codec)], rate,
                        bucket.data.data(), static_cast<int64_t>(bucket.data.size()), opt, st);
    return;
  }
  *st = AllreduceStats{};
  for (int index : bucket.params) {
    Param& p = params_[index];
    PowerSgdOptions opt;
    opt.rank = p.codec.rate.rank;
    // The same stream on every rank, a different one for every tensor.
    opt.seed = kernels::roundingKey(options_.seed, 0, static_cast<uint64_t>(index));
    opt.average = true;
    opt.errorFeedback = options_.errorFeedback;
    opt.timeoutSeconds = options_.timeoutSeconds;
    AllreduceStats one;
    powerSgdAllreduce(*comm_, *p.powerSgd, bucket.data.data() + p.offset, p.powerSgd->rows(),
                      p.powerSgd->cols(), opt, &one);
    st->wireBytes += one.wireBytes;
    st->fp32Bytes += one.fp32Bytes;
    st->encodeSeconds += one.encodeSeconds;
    st->commSeconds += one.commSeconds;
    st->decodeSeconds += one.decodeSeconds;
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

void Reducer::setStep(uint64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  CDL_CHECK(nextBucket_ == 0 && std::none_of(params_.begin(), params_.end(),
                                             [](const Param& p) { return p.ready; }),
            "reducer: setStep() in the middle of a step");
  step_ = step;
}

const CodecSpec& Reducer::codecOf(const std::string& name) const {
  auto it = byName_.find(name);
  CDL_CHECK(it != byName_.end(), "reducer: no parameter named '", name, "'");
  return params_[it->second].codec;
}

std::map<std::string, std::vector<float>> Reducer::errorFeedbackState() const {
  std::map<std::string, std::vector<float>> out;
  for (const Param& p : params_) {
    if (p.powerSgd) {
      std::vector<float> residual = p.powerSgd->residual();
      if (options_.errorFeedback && residual.empty()) residual.assign(p.numel, 0.0f);
      out[p.name] = std::move(residual);
      out[p.name + kPowerSgdQSuffix] = p.powerSgd->q();
      continue;
    }
    const Bucket& b = buckets_[p.bucket];
    out[p.name] = b.residual.empty() ? std::vector<float>()
                                     : std::vector<float>(b.residual.begin() + p.offset,
                                                          b.residual.begin() + p.offset + p.numel);
  }
  return out;
}

void Reducer::restoreErrorFeedback(const std::map<std::string, std::vector<float>>& state) {
  std::map<std::string, int> expected;  // every key a complete state has, by parameter
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    expected[params_[i].name] = i;
    if (params_[i].powerSgd) expected[params_[i].name + kPowerSgdQSuffix] = i;
  }
  for (const auto& [name, values] : state) {
    CDL_CHECK(expected.count(name), "reducer: saved error feedback names unknown tensor '", name,
              "'");
  }
  for (const auto& [name, index] : expected) {
    CDL_CHECK(state.count(name), "reducer: saved error feedback lacks tensor '", name, "'");
  }
  // Check everything before changing anything.
  std::vector<std::unique_ptr<PowerSgdState>> restored(params_.size());
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    const Param& p = params_[i];
    const std::vector<float>& values = state.at(p.name);
    if (p.powerSgd) {
      PowerSgdSnapshot s;
      s.rows = p.powerSgd->rows();
      s.cols = p.powerSgd->cols();
      s.q = state.at(p.name + kPowerSgdQSuffix);
      s.rank = s.q.empty() ? 0 : p.codec.rate.rank;
      // A residual of zeros is what a state holds before its first step.
      const bool zero = std::all_of(values.begin(), values.end(), [](float v) { return v == 0; });
      if (!zero || !s.q.empty()) s.residual = values;
      CDL_CHECK(values.empty() || values.size() == static_cast<size_t>(p.numel),
                "reducer: saved error feedback of '", p.name, "' has ", values.size(),
                " values, expected ", p.numel);
      restored[i] = std::make_unique<PowerSgdState>(p.name, s.rows, s.cols);
      restored[i]->restore(s);  // validates the shape, rank and values, naming the tensor
      continue;
    }
    const size_t want = buckets_[p.bucket].residual.empty() ? 0 : static_cast<size_t>(p.numel);
    CDL_CHECK(values.size() == want, "reducer: saved error feedback of '", p.name, "' has ",
              values.size(), " values, expected ", want);
    for (size_t j = 0; j < values.size(); ++j) {
      CDL_CHECK(std::isfinite(values[j]), "reducer: saved error feedback of '", p.name, "' holds ",
                values[j], " at element ", j);
    }
  }
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    Param& p = params_[i];
    const std::vector<float>& values = state.at(p.name);
    if (p.powerSgd) {
      p.powerSgd = std::move(restored[i]);
    } else {
      std::copy(values.begin(), values.end(), buckets_[p.bucket].residual.begin() + p.offset);
    }
  }
}

}  // namespace cdl::comm
