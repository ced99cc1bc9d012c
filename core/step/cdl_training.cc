#include "core/step/cdl_training.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/models/models.h"
#include "core/run/collectives.h"
#include "core/step/train_step.h"
#include "kernels/base/error.h"
#include "kernels/histogram.h"
#include "kernels/rans.h"

namespace cdl::core {
namespace {

// Bits per element of a histogram of at most 256 levels (kernels::entropyBits on its counts).
double entropyOf(std::vector<float>::const_iterator begin, std::vector<float>::const_iterator end) {
  uint64_t counts[256] = {};
  uint64_t total = 0;
  for (size_t s = 0; begin + s != end; ++s) {
    counts[s] = static_cast<uint64_t>(std::llround(begin[s]));
    total += counts[s];
  }
  return total > 0 ? kernels::entropyBits(counts) / static_cast<double>(total) : 0.0;
}

// The sum of rate * elements over the quantizers' last forward pass (a scalar tensor; 0 without
// quantizers), its value and the element count.
struct RateSum {
  at::Tensor sum;
  double value = 0.0, elements = 0.0;
};
RateSum rateSum(const std::vector<std::pair<std::string, Quantizer>>& qs) {
  RateSum r;
  for (const auto& [name, q] : qs) {
    CDL_CHECK(q->rate().defined(), "CDL: quantizer '", name, "' has no rate (no training forward)");
    const at::Tensor term = q->rate() * q->rateElements();
    r.sum = r.sum.defined() ? r.sum + term : term;
    r.elements += q->rateElements();
  }
  if (!r.sum.defined()) r.sum = at::zeros({});
  r.value = r.sum.item<double>();
  return r;
}

}  // namespace

void CdlTraining::afterEvaluation(const StepSchedule& schedule, std::optional<CdlReport>& out) {
  setCounting(false);
  out = schedule.joinReports(report());
}

CdlModelOptions cdlModelOptions(const Config::Cdl& cfg) {
  CdlModelOptions o;
  o.enabled = cfg.mode != "none";
  o.weightBits = static_cast<int>(cfg.weightBits);
  o.actBits = static_cast<int>(cfg.actBits);
  o.firstLastBits = static_cast<int>(cfg.firstLastBits);
  o.kappa = cfg.kappa;
  o.trainKappa = cfg.trainKappa;
  o.window = static_cast<int>(cfg.window);
  return o;
}

CdlTraining::CdlTraining(const Config::Cdl& cfg, uint64_t seed, Net& model,
                         comm::Communicator& comm, Net* idModel)
    : cfg_(cfg), model_(model), comm_(comm), context_(std::make_shared<CdlContext>()) {
  CDL_CHECK(cfg.mode == "cdl" || cfg.mode == "rcdl" || cfg.mode == "lsq", "config key cdl.mode: '",
            cfg.mode, "' is not a quantized mode (cdl, rcdl or lsq)");
  context_->mode = cfg.mode == "cdl"    ? CdlMode::kCdl
                   : cfg.mode == "rcdl" ? CdlMode::kRcdl
                                        : CdlMode::kLsq;
  context_->seed = seed;
  comm::Communicator* c = &comm_;
  context_->sumOverRanks = [c](std::vector<float>& v) { v = sumOverRanks(*c, std::move(v)); };
  std::map<std::string, uint64_t> ids;
  for (auto& [name, q] : quantizersOf(idModel ? *idModel : model)) ids.emplace(name, ids.size());
  for (auto& [name, q] : quantizersOf(model)) {
    CDL_CHECK(ids.count(name), "CDL: quantizer '", name, "' is not part of the whole model");
    q->attach(context_, ids.at(name));
    (q->options().activation ? activationQuantizers_ : weightQuantizers_).emplace_back(name, q);
  }
  CDL_CHECK(!weightQuantizers_.empty(), "CDL: the model has no quantized layers");
}

double CdlTraining::kappaAt(int64_t step) const {
  if (cfg_.kappaFinal <= 0) return cfg_.kappa;
  const double t =
      totalSteps_ > 1
          ? std::clamp(static_cast<double>(step) / static_cast<double>(totalSteps_ - 1), 0.0, 1.0)
          : 1.0;
  return cfg_.kappa * std::pow(cfg_.kappaFinal / cfg_.kappa, t);
}

void CdlTraining::setStep(int64_t step) {
  context_->step = static_cast<uint64_t>(step);
  context_->exampleOffset = 0;
  if (cfg_.kappaFinal > 0) {
    const double kappa = kappaAt(step);
    for (auto* qs : {&weightQuantizers_, &activationQuantizers_}) {
      for (auto& [name, q] : *qs) q->setKappa(kappa);
    }
  }
}

void CdlTraining::setExampleOffset(int64_t offset) { context_->exampleOffset = offset; }

void CdlTraining::finishActivationRates() const {
  // One allreduce of every pending activation histogram, each followed by its element count.
  std::vector<float> all;
  for (const auto& [name, q] : activationQuantizers_) {
    const at::Tensor& m = q->pendingMass();
    if (!m.defined()) continue;
    const at::Tensor local = m.detach().contiguous();
    all.insert(all.end(), local.data_ptr<float>(), local.data_ptr<float>() + local.numel());
    all.push_back(static_cast<float>(q->rateElements()));
  }
  if (all.empty()) return;
  context_->sumOverRanks(all);
  size_t pos = 0;
  for (const auto& [name, q] : activationQuantizers_) {
    if (!q->pendingMass().defined()) continue;
    const int64_t n = q->pendingMass().numel();
    const at::Tensor global = at::empty({n}, q->pendingMass().options());
    std::copy(all.begin() + static_cast<std::ptrdiff_t>(pos),
              all.begin() + static_cast<std::ptrdiff_t>(pos) + n, global.data_ptr<float>());
    pos += static_cast<size_t>(n);
    Quantizer finishing = q;  // a handle: the quantizer itself is not part of this const object
    finishing->finishRate(global, all[pos++]);
  }
}

CdlTraining::RateParts CdlTraining::rateParts() const {
  finishActivationRates();
  const RateSum w = rateSum(weightQuantizers_), a = rateSum(activationQuantizers_);
  return {w.sum, a.sum, w.value, w.elements, a.value, a.elements};
}

CdlTraining::Rate CdlTraining::rate(int64_t step) const {
  const RateParts parts = rateParts();
  return rate(step, parts, parts);
}

CdlTraining::Rate CdlTraining::rate(int64_t step, const RateParts& own,
                                    const RateParts& all) const {
  const double ramp =
      cfg_.rateWarmupSteps > 0
          ? std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(cfg_.rateWarmupSteps))
          : 1.0;
  const auto mean = [](const at::Tensor& sum, double elements) {
    return elements > 0 ? sum / elements : at::zeros({});
  };
  Rate r;
  // A term of weight 0 stays out of the graph, so the quantizers' backward passes skip its
  // gradient (the activations' at lambda_a = 0, the usual case: their tensors are the largest).
  const auto term = [&](const at::Tensor& sum, double elements, double lambda) {
    return lambda != 0.0 ? mean(sum, elements) * lambda : at::zeros({});
  };
  r.loss = (term(own.weightSum, all.weightElements, cfg_.lambdaW) +
            term(own.activationSum, all.activationElements, cfg_.lambdaA)) *
           ramp;
  r.weightBits = all.weightElements > 0 ? all.weightBits / all.weightElements : 0.0;
  r.activationBits = all.activationElements > 0 ? all.activationBits / all.activationElements : 0.0;
  return r;
}

void CdlTraining::setEvalMode(EvalMode mode) {
  for (auto* qs : {&weightQuantizers_, &activationQuantizers_}) {
    for (auto& [name, q] : *qs) q->setEvalMode(mode);
  }
}

void CdlTraining::setCounting(bool on) {
  for (auto& [name, q] : activationQuantizers_) q->setCounting(on);
}

CdlReport CdlTraining::report() const {
  CdlReport out;
  std::set<std::string> quantized;
  double weighted = 0.0, off = 0.0;
  int64_t total = 0;
  for (const QuantizedWeight& w : quantizedWeightsOf(model_)) {
    const std::vector<uint8_t> sym = w.quantizer->symbols(w.weight);
    uint64_t counts[256];
    kernels::histogram(sym.data(), static_cast<int64_t>(sym.size()), counts);
    std::vector<uint8_t> coded(kernels::ransMaxEncodedBytes(static_cast<int64_t>(sym.size())));
    CdlWeightReport r;
    r.name = w.name;
    r.numel = static_cast<int64_t>(sym.size());
    r.bits = w.quantizer->options().bits;
    r.step = w.quantizer->stepValue();
    r.entropyBits = sym.empty() ? 0.0 : kernels::entropyBits(counts) / sym.size();
    r.codedBytes = kernels::ransEncode(sym.data(), r.numel, coded.data(), coded.size());
    r.kappa = w.quantizer->kappaValue();
    r.offNearest = w.quantizer->offNearestShare(w.weight);
    off += r.offNearest * static_cast<double>(r.numel);
    weighted += r.entropyBits * r.numel;
    total += r.numel;
    out.codedWeightBytes += r.codedBytes;
    quantized.insert(w.name);
    out.weights.push_back(r);
  }
  out.bitsPerWeight = total > 0 ? weighted / total : 0.0;
  out.offNearest = total > 0 ? off / static_cast<double>(total) : 0.0;
  out.codedBitsPerWeight = total > 0 ? 8.0 * out.codedWeightBytes / total : 0.0;
  for (const auto& p : model_.named_parameters()) {
    if (!quantized.count(p.key())) out.otherBytes += 4 * p.value().numel();
  }
  for (const auto& b : model_.named_buffers()) {
    if (b.value().is_floating_point()) out.otherBytes += 4 * b.value().numel();
  }
  // One allreduce of every activation histogram.
  std::vector<float> all;
  for (const auto& [name, q] : activationQuantizers_) {
    all.insert(all.end(), q->counts().begin(), q->counts().end());
  }
  context_->sumOverRanks(all);
  size_t at = 0;
  for (const auto& [name, q] : activationQuantizers_) {
    const size_t n = q->counts().size();
    CdlActivationReport r;
    r.name = name;
    r.bits = q->options().bits;
    r.step = q->stepValue();
    r.kappa = q->kappaValue();
    r.entropyBits = entropyOf(all.cbegin() + at, all.cbegin() + at + n);
    at += n;
    out.activations.push_back(r);
  }
  return out;
}

}  // namespace cdl::core
