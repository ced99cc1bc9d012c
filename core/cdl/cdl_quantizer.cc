#include "core/cdl/cdl_quantizer.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/log2.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/round.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>

#include "core/cdl/cdl_kernel.h"
#include "kernels/base/error.h"
#include "kernels/int_linear.h"
#include "kernels/rng.h"

namespace cdl::core {
namespace {

constexpr double kMinStep = 1e-12;
constexpr uint64_t kSampleStream = 0x43444c5153ull;  // "CDLQS": apart from gradient rounding
constexpr uint64_t kEvalStream = 0x43444c5145ull;    // "CDLQE": kSampled evaluations

void checkKappa(double kappa) {
  CDL_CHECK(kappa > 0 && kappa <= kKappaMax, "quantizer: kappa = ", kappa, " (must be in (0, ",
            kKappaMax, "])");
}

// t in the forward pass, t's gradient times g in the backward pass.
at::Tensor scaleGradient(const at::Tensor& t, double g) { return (t - t * g).detach() + t * g; }

}  // namespace

LevelRange levelRange(int bits, bool isSigned) {
  CDL_CHECK(bits >= 1 && bits <= 8, "quantizer: bits = ", bits, " (must be 1..8)");
  if (isSigned) return {-(int64_t{1} << (bits - 1)), (int64_t{1} << (bits - 1)) - 1};
  return {0, (int64_t{1} << bits) - 1};
}

SoftQuantization softQuantize(const at::Tensor& x, const at::Tensor& step, const at::Tensor& kappa,
                              LevelRange range, int window) {
  CDL_CHECK(window >= 1, "quantizer: window = ", window, " (must be >= 1)");
  const int64_t w = std::min<int64_t>(window, range.count());
  const at::Tensor q = step.clamp_min(kMinStep);
  const at::Tensor u = x / q;
  // The window's first level: centred on round(x / q), moved inside the range at its edges.
  const at::Tensor first =
      (at::round(u.detach()) - static_cast<double>((w - 1) / 2))
          .clamp(static_cast<double>(range.lo), static_cast<double>(range.hi - w + 1));
  SoftQuantization s;
  s.levels = first.unsqueeze(-1) + at::arange(w, x.options().requires_grad(false));
  const at::Tensor d = u.unsqueeze(-1) - s.levels;
  s.probs = at::softmax(-kappa.clamp(kKappaMin, kKappaMax) * d * d, -1);
  s.soft = q * (s.probs * s.levels).sum(-1);
  return s;
}

at::Tensor sampleLevels(const SoftQuantization& s, uint64_t key) {
  const at::Tensor cdf = s.probs.detach().cumsum(-1);
  at::Tensor uniform = at::empty(s.soft.sizes(), s.probs.options().requires_grad(false));
  float* u = uniform.data_ptr<float>();
  const int64_t n = uniform.numel();
  for (int64_t j = 0; j < n; ++j) u[j] = kernels::uniform01(key, static_cast<uint64_t>(j));
  // The first window slot whose cumulative mass reaches the draw.
  const int64_t w = s.levels.size(-1);
  const at::Tensor slot = (cdf < uniform.unsqueeze(-1)).sum(-1, /*keepdim=*/true).clamp_max(w - 1);
  return s.levels.gather(-1, slot).squeeze(-1);
}

at::Tensor nearestLevels(const at::Tensor& x, const at::Tensor& step, LevelRange range) {
  return at::round(x / step.clamp_min(kMinStep))
      .clamp(static_cast<double>(range.lo), static_cast<double>(range.hi));
}

at::Tensor levelMass(const SoftQuantization& s, LevelRange range) {
  const at::Tensor bins = (s.levels - static_cast<double>(range.lo)).to(at::kLong).flatten();
  return at::zeros({range.count()}, s.probs.options().requires_grad(false))
      .scatter_add(0, bins, s.probs.flatten());
}

at::Tensor entropyBits(const at::Tensor& mass, double total) {
  CDL_CHECK(total > 0, "entropy of an empty pmf");
  const at::Tensor p = mass / total;
  return -(p * at::log2(p.clamp_min(1e-30))).sum();
}

QuantizerImpl::QuantizerImpl(const QuantizerOptions& options)
    : options_(options), range_(levelRange(options.bits, options.isSigned)) {
  CDL_CHECK(options.window >= 1, "quantizer: window = ", options.window, " (must be >= 1)");
  checkKappa(options.kappa);
  logStep_ = register_parameter("log_step", at::zeros({1}));
  const at::Tensor kappa = at::full({1}, options.kappa);
  kappa_ =
      options.trainKappa ? register_parameter("kappa", kappa) : register_buffer("kappa", kappa);
  initialized_ = register_buffer("initialized", at::zeros({1}));
  counts_.assign(static_cast<size_t>(range_.count()), 0.0);
}

void QuantizerImpl::attach(std::shared_ptr<CdlContext> context, uint64_t id) {
  context_ = std::move(context);
  id_ = id;
}

void QuantizerImpl::initFromWeight(const at::Tensor& w) {
  at::NoGradGuard noGrad;
  const double mean = w.abs().mean().item<double>();
  const double q = 2.0 * mean / std::sqrt(static_cast<double>(range_.hi > 0 ? range_.hi + 1 : 1));
  logStep_.fill_(std::log(q > 0 ? q : 1.0 / static_cast<double>(range_.count())));
  initialized_.fill_(1.0);
}

void QuantizerImpl::initFromBatch(const at::Tensor& x) {
  at::NoGradGuard noGrad;
  std::vector<float> sums = {x.abs().sum().item<float>(), static_cast<float>(x.numel())};
  if (context_ && context_->sumOverRanks) context_->sumOverRanks(sums);
  const double mean = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
  const double q = 2.0 * mean / std::sqrt(static_cast<double>(range_.hi));
  logStep_.fill_(std::log(q > 0 ? q : 1.0 / static_cast<double>(range_.count())));
  initialized_.fill_(1.0);
}

at::Tensor QuantizerImpl::step() const { return logStep_.exp(); }

double QuantizerImpl::stepValue() const { return step().item<double>(); }

float QuantizerImpl::onePassStep() const {
  if (is_training() || evalMode_ != EvalMode::kNearest || counting_ || at::GradMode::is_enabled()) {
    return 0.0f;
  }
  const float q = step().item<float>();
  return q >= kMinStep ? q : 0.0f;
}

double QuantizerImpl::kappaValue() const {
  return kappa_.clamp(kKappaMin, kKappaMax).item<double>();
}

void QuantizerImpl::setKappa(double kappa) {
  CDL_CHECK(!options_.trainKappa, "quantizer: kappa is trained, so it cannot be set");
  checkKappa(kappa);
  at::NoGradGuard noGrad;
  kappa_.fill_(kappa);
}

at::Tensor QuantizerImpl::forward(const at::Tensor& x) {
  if (!is_training() && evalMode_ != EvalMode::kNearest) {
    CDL_CHECK(context_ != nullptr, "quantizer: not attached to a model's CDL context");
    at::NoGradGuard noGrad;
    const uint64_t key = kernels::roundingKey(context_->seed ^ kEvalStream, context_->step, id_);
    return fusedQuantize(x.detach().contiguous(), step(), kappa_, range_, options_.window,
                         evalMode_ == EvalMode::kSampled, key)
        .y;
  }
  if (const float q = onePassStep(); q > 0.0f && x.scalar_type() == at::kFloat) {
    const at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty_like(xc);
    kernels::nearestLevelValues(xc.data_ptr<float>(), xc.numel(), q, static_cast<float>(range_.lo),
                                static_cast<float>(range_.hi), y.data_ptr<float>());
    return y;
  }
  if (!is_training()) {
    const at::Tensor levels = nearestLevels(x, step(), range_);
    if (counting_) {
      const at::Tensor l = levels.detach().contiguous();
      const float* p = l.data_ptr<float>();
      for (int64_t j = 0, n = l.numel(); j < n; ++j) {
        if (std::isfinite(p[j])) {  // levels are clamped to the range; NaN is not counted
          counts_[static_cast<size_t>(static_cast<int64_t>(p[j]) - range_.lo)] += 1.0;
        }
      }
    }
    return levels * step();
  }
  CDL_CHECK(context_ != nullptr, "quantizer: not attached to a model's CDL context");
  if (initialized_.item<float>() == 0.0f) initFromBatch(x);
  // LSQ's gradient scale: q's gradient sums over every element, so it is taken down by
  // sqrt(elements * top level) to stay comparable to the weights' gradients.
  const double g = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(1, x.numel())) *
                                   static_cast<double>(std::max<int64_t>(1, range_.hi)));
  const FusedQuantization f =
      context_->mode == CdlMode::kLsq ? quantizeLsq(x, g) : quantizeCdl(x, g);
  rateElements_ = static_cast<double>(x.numel());
  if (options_.activation && context_->sumOverRanks) {
    pendingMass_ = f.mass;  // summed over the ranks with the others' (finishRate)
    rate_ = at::Tensor();
  } else {
    pendingMass_ = at::Tensor();
    rate_ = entropyBits(f.mass, rateElements_);
  }
  return f.y;
}

FusedQuantization QuantizerImpl::quantizeCdl(const at::Tensor& x, double g) const {
  // Note [Step from the sample]: CDL's q learns as LSQ's does, in steps proportional to q
  // (quantizeLsq); R-CDL's through Q_d, at LSQ's scale on log q.
  const bool cdl = context_->mode == CdlMode::kCdl;
  const at::Tensor step = scaleGradient(logStep_, cdl ? g / stepValue() : g).exp();
  const at::Tensor kappa = options_.trainKappa ? scaleGradient(kappa_, g) : kappa_;
  const uint64_t key = kernels::roundingKey(context_->seed ^ kSampleStream, context_->step, id_);
  const int64_t perExample = x.dim() > 0 && x.size(0) > 0 ? x.numel() / x.size(0) : 0;
  const int64_t counterBase = options_.activation ? context_->exampleOffset * perExample : 0;
  return fusedQuantize(x, step, kappa, range_, options_.window, cdl, key, counterBase);
}

FusedQuantization QuantizerImpl::quantizeLsq(const at::Tensor& x, double g) const {
  // LSQ learns q itself with gradient scale g. Here q = exp(log_step): log_step's gradient is q
  // times q's, and a step of it moves q by q times as much again, so the gradient scale g / q
  // moves q by q times LSQ's step, in proportion to q itself. (g / q^2 would move it by LSQ's
  // step, but multiplicatively: a q that shrinks takes ever larger relative steps, which made
  // the 6-bit CNN collapse within 400 steps.)
  const double q = stepValue();
  return lsqQuantize(x, scaleGradient(logStep_, g / q).exp(), range_);
}

void QuantizerImpl::finishRate(const at::Tensor& globalMass, double globalElements) {
  CDL_CHECK(pendingMass_.defined(), "quantizer: no pending rate to finish");
  CDL_CHECK(globalMass.numel() == range_.count(), "quantizer: ", globalMass.numel(),
            " level masses, expected ", range_.count());
  // The global histogram; the gradient is this rank's share.
  const at::Tensor mass = pendingMass_ + (globalMass - pendingMass_.detach());
  rate_ = entropyBits(mass, globalElements);
  rateElements_ = globalElements;
  pendingMass_ = at::Tensor();
}

std::vector<uint8_t> QuantizerImpl::symbols(const at::Tensor& x) const {
  at::NoGradGuard noGrad;
  const at::Tensor l = (nearestLevels(x, step(), range_) - static_cast<double>(range_.lo))
                           .contiguous()
                           .to(at::kFloat);
  const float* p = l.data_ptr<float>();
  return std::vector<uint8_t>(p, p + l.numel());
}

double QuantizerImpl::offNearestShare(const at::Tensor& x) const {
  CDL_CHECK(context_ != nullptr, "quantizer: not attached to a model's CDL context");
  if (x.numel() == 0 || context_->mode == CdlMode::kLsq) return 0.0;
  at::NoGradGuard noGrad;
  const uint64_t key = kernels::roundingKey(context_->seed ^ kSampleStream, context_->step, id_);
  const at::Tensor q = step();
  const at::Tensor sampled =
      fusedQuantize(x.detach().contiguous(), q, kappa_, range_, options_.window, true, key).y;
  const at::Tensor nearest = nearestLevels(x.detach(), q, range_) * q;
  return sampled.ne(nearest).sum().item<double>() / static_cast<double>(x.numel());
}

void QuantizerImpl::setCounting(bool on) {
  counting_ = on;
  if (on) std::fill(counts_.begin(), counts_.end(), 0.0);
}

}  // namespace cdl::core
