#include "core/pipeline/pipeline.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <torch/csrc/autograd/autograd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "comm/codec/codec.h"
#include "comm/reduce/reducer.h"
#include "comm/transport/work.h"
#include "core/data/batch.h"
#include "core/models/models.h"
#include "core/run/collectives.h"
#include "core/step/cdl_training.h"
#include "core/step/train_step.h"
#include "kernels/base/error.h"
#include "kernels/rans.h"
#include "kernels/rng.h"

namespace cdl::core {
namespace {

constexpr uint64_t kForward = 1, kBackward = 2;  // message tags on the pipeline group
constexpr uint32_t kMagic = 0x41444c43;          // "CDLA"
constexpr uint8_t kPayload = 0, kIndices = 1;    // what follows the shape
constexpr int kMaxDims = 8;
constexpr uint64_t kMaxMessage = uint64_t{1} << 31;
constexpr uint64_t kCutStream = 0x6375745f73747265ULL;  // keys stochastic rounding at cuts

template <typename T>
void put(Bytes& b, T v) {
  const size_t at = b.size();
  b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}

// Reads fields of a message, checking every length.
class Reader {
 public:
  Reader(const Bytes& b, const std::string& what) : b_(b), what_(what) {}
  template <typename T>
  T get(const char* field) {
    CDL_CHECK(at_ + sizeof(T) <= b_.size(), what_, ": the message ends inside its ", field, " (",
              b_.size(), " bytes)");
    T v;
    std::memcpy(&v, b_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  const uint8_t* rest() const { return b_.data() + at_; }
  size_t left() const { return b_.size() - at_; }

 private:
  const Bytes& b_;
  const std::string& what_;
  size_t at_ = 0;
};

}  // namespace

ProcessGrid unsplitGrid(std::shared_ptr<comm::Communicator> world) {
  CDL_CHECK(world != nullptr, "grid: null communicator");
  ProcessGrid g;
  g.world = world;
  g.data = world;
  return g;
}

void checkGridSize(int ranks, int64_t stages) {
  CDL_CHECK(stages >= 1 && ranks % stages == 0, "config key model.split.stages: ", stages,
            " stages do not divide the job's ", ranks,
            " ranks; run -np = stages x data-parallel replicas");
}

std::vector<ProcessGrid> makeLocalGrids(int ranks, int stages,
                                        const comm::CollectiveOptions& options) {
  checkGridSize(ranks, stages);
  const int replicas = ranks / stages;
  const auto world = comm::makeLocalGroup(ranks, options);
  std::vector<std::vector<std::shared_ptr<comm::Communicator>>> data, pipe;
  for (int s = 0; s < stages; ++s) data.push_back(comm::makeLocalGroup(replicas, options));
  for (int d = 0; d < replicas; ++d) pipe.push_back(comm::makeLocalGroup(stages, options));
  std::vector<ProcessGrid> grids(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    const int s = r % stages, d = r / stages;
    grids[r].world = world[r];
    grids[r].data = data[s][d];
    grids[r].pipe = stages > 1 ? pipe[d][s] : nullptr;
    grids[r].stages = stages;
  }
  return grids;
}

void requireSameConfig(comm::Communicator& c, const Config& cfg) {
  Config mine = cfg;
  mine.slurm = Config::Slurm{};
  const std::string text = toYaml(mine);
  const Bytes send(text.begin(), text.end());
  Bytes all;
  std::vector<size_t> sizes;
  c.allgatherv(send, &all, &sizes)->wait();
  std::vector<std::string> texts;
  for (size_t r = 0, at = 0; r < sizes.size(); at += sizes[r++]) {
    texts.emplace_back(reinterpret_cast<const char*>(all.data()) + at, sizes[r]);
  }
  for (size_t r = 1; r < texts.size(); ++r) {
    if (texts[r] == texts[0]) continue;
    const Config first = parseConfig(texts[0], "rank 0's config");
    const Config other = parseConfig(texts[r], "rank " + std::to_string(r) + "'s config");
    const int64_t stages = std::max<int64_t>(1, first.model.split.stages);
    CDL_THROW("the ranks' configs differ: key ", describeDifference(first, other),
              " between rank 0 (stage 0) and rank ", r, " (stage ",
              static_cast<int64_t>(r) % stages, "); every rank must run the same config");
  }
}

std::vector<std::pair<size_t, size_t>> stageSegments(const Net& model,
                                                     const Config::Model::Split& split) {
  const std::vector<Segment>& segs = model.segments();
  std::string known;
  for (size_t i = 0; i + 1 < segs.size(); ++i) known += (i ? ", " : "") + segs[i].name;
  CDL_CHECK(static_cast<int64_t>(split.cutAfter.size()) == split.stages - 1,
            "config key model.split.cut_after: ", split.stages, " stages need ", split.stages - 1,
            " cut(s), got ", split.cutAfter.size(), " (the model can be cut after: ", known, ")");
  std::vector<std::pair<size_t, size_t>> out;
  size_t first = 0;
  for (size_t c = 0; c < split.cutAfter.size(); ++c) {
    const std::string& name = split.cutAfter[c];
    size_t at = segs.size();
    for (size_t i = 0; i < segs.size(); ++i) {
      if (segs[i].name == name) at = i;
    }
    CDL_CHECK(at + 1 < segs.size(), "config key model.split.cut_after[", c, "]: '", name,
              "' is not a place the model can be cut (it can be cut after: ", known, ")");
    CDL_CHECK(at >= first, "config key model.split.cut_after[", c, "]: '", name,
              "' does not come after the previous cut; name the cuts in model order");
    out.emplace_back(first, at + 1);
    first = at + 1;
  }
  out.emplace_back(first, segs.size());
  return out;
}

namespace {

class StageNet : public Net {
 public:
  StageNet(std::shared_ptr<Net> whole, size_t first, size_t last)
      : whole_(std::move(whole)), first_(first) {
    const std::vector<Segment>& segs = whole_->segments();
    CDL_CHECK(first < last && last <= segs.size(), "stage: segments [", first, ", ", last,
              ") outside the model's ", segs.size());
    std::set<std::string> mine;
    for (size_t i = first; i < last; ++i) {
      mine.insert(segs[i].modules.begin(), segs[i].modules.end());
      segments_.push_back(segs[i]);
    }
    for (const auto& child : whole_->named_children()) {
      if (mine.count(child.key())) register_module(child.key(), child.value());
    }
  }

  void checkInput(const torch::Tensor& x) const override {
    if (first_ == 0) whole_->checkInput(x);
  }

 private:
  std::shared_ptr<Net> whole_;
  size_t first_;
};

}  // namespace

std::shared_ptr<Net> makeStageNet(std::shared_ptr<Net> whole, size_t first, size_t last) {
  CDL_CHECK(whole != nullptr, "stage: null model");
  return std::make_shared<StageNet>(std::move(whole), first, last);
}

// --- CutCodec ---

CutCodec::CutCodec(const std::string& spec, Quantizer quantizer, const std::string& key) {
  const bool cdl = !quantizer.is_empty();
  if (spec == "cdl" || (spec == "auto" && cdl)) {
    CDL_CHECK(cdl, "config key ", key,
              ": 'cdl' codes a CDL model's activation indices, but this cut has no activation "
              "quantizer (set cdl.mode, or name a codec such as fp16)");
    quantizer_ = quantizer;
    return;
  }
  try {
    spec_ = comm::parseCodecSpec(spec == "auto" ? "fp16" : spec);
  } catch (const Error& e) {
    CDL_THROW("config key ", key, ": ", errorBody(e.what()));
  }
  codec_ = comm::makeCodec(spec_.codec);
}

std::string CutCodec::describe() const {
  return indices() ? "CDL indices + rANS" : comm::formatCodecSpec(spec_);
}

Bytes CutCodec::encode(const at::Tensor& x, uint64_t roundingKey) const {
  CDL_CHECK(x.scalar_type() == at::kFloat && x.dim() <= kMaxDims, "cut: cannot send a ",
            x.scalar_type(), " tensor of ", x.dim(), " dimensions");
  const at::Tensor t = x.detach().contiguous();
  Bytes b;
  put<uint32_t>(b, kMagic);
  put<uint8_t>(b, indices() ? kIndices : kPayload);
  put<uint8_t>(b, static_cast<uint8_t>(t.dim()));
  for (int64_t d = 0; d < t.dim(); ++d) put<int64_t>(b, t.size(d));
  const int64_t n = t.numel();
  const size_t head = b.size();
  if (indices()) {
    const std::vector<uint8_t> sym = quantizer_->symbols(t);
    const float step = static_cast<float>(quantizer_->stepValue());
    put<float>(b, step);
    put<int32_t>(b, static_cast<int32_t>(quantizer_->range().lo));
    put<int32_t>(b, static_cast<int32_t>(quantizer_->range().count()));
    const size_t at = b.size();
    b.resize(at + kernels::ransMaxEncodedBytes(n));
    b.resize(at + kernels::ransEncode(sym.data(), n, b.data() + at, b.size() - at));
    return b;
  }
  b.resize(head + codec_->maxEncodedBytes(n, spec_.rate));
  b.resize(head + codec_->encode(t.data_ptr<float>(), n, spec_.rate, roundingKey, b.data() + head,
                                 b.size() - head));
  return b;
}

at::Tensor CutCodec::decode(const Bytes& message, const std::string& what) const {
  Reader r(message, what);
  CDL_CHECK(r.get<uint32_t>("magic") == kMagic, what, ": not a cut message");
  const uint8_t kind = r.get<uint8_t>("kind");
  CDL_CHECK(kind == (indices() ? kIndices : kPayload), what, ": the message holds ",
            kind == kIndices ? "CDL indices" : "a codec payload", " but this cut decodes ",
            describe(), " (the stages' configs differ)");
  const int dims = r.get<uint8_t>("dimension count");
  CDL_CHECK(dims <= kMaxDims, what, ": ", dims, " dimensions (at most ", kMaxDims, ")");
  std::vector<int64_t> shape;
  int64_t n = 1;
  for (int d = 0; d < dims; ++d) {
    const int64_t s = r.get<int64_t>("shape");
    CDL_CHECK(s >= 0 && (s == 0 || n <= (int64_t{1} << 31) / s), what, ": bad shape entry ", s);
    shape.push_back(s);
    n *= s;
  }
  at::Tensor out = at::empty(shape, at::kFloat);
  if (!indices()) {
    codec_->decode(r.rest(), r.left(), out.data_ptr<float>(), n, /*accumulate=*/false);
    return out;
  }
  const float step = r.get<float>("step");
  const int32_t lo = r.get<int32_t>("level offset");
  const int32_t count = r.get<int32_t>("level count");
  CDL_CHECK(std::isfinite(step) && step > 0 && count >= 1 && count <= 256 && lo > -256 && lo < 256,
            what, ": bad quantizer fields (step ", step, ", levels ", lo, " + [0, ", count, "))");
  std::vector<uint8_t> sym(static_cast<size_t>(n));
  kernels::ransDecode(r.rest(), r.left(), n, sym.data(), count);
  float* p = out.data_ptr<float>();
  for (int64_t j = 0; j < n; ++j) p[j] = static_cast<float>(sym[j] + lo);
  return out * step;
}

// --- Pipeline ---

struct Pipeline::Outgoing {
  uint64_t length = 0;
  Bytes message;
  std::vector<std::shared_ptr<comm::Work>> works;
  std::string what;
};

Pipeline::Pipeline(const Config& cfg, const ProcessGrid& grid, std::shared_ptr<Net> whole,
                   Net& stageNet)
    : grid_(grid),
      whole_(std::move(whole)),
      net_(stageNet),
      stage_(grid.stage()),
      stages_(grid.stages),
      microBatches_(cfg.model.split.microBatches),
      seed_(cfg.seed) {
  CDL_CHECK(grid_.pipe != nullptr && grid_.pipe->size() == stages_ && grid_.pipe->rank() == stage_,
            "pipeline: the pipeline group of rank ", grid_.world->rank(), " does not match ",
            stages_, " stages");
  const auto bounds = stageSegments(*whole_, cfg.model.split);
  const std::vector<Segment>& segs = whole_->segments();
  const Config::Model::Split& sp = cfg.model.split;
  if (!first()) {
    const Segment& in = segs[bounds[stage_].first - 1];
    cutIn_ = in.name;
    forwardIn_ =
        std::make_unique<CutCodec>(sp.activationCodec, in.output, "model.split.activation_codec");
    backwardOut_ = std::make_unique<CutCodec>(sp.gradientCodec, Quantizer(nullptr),
                                              "model.split.gradient_codec");
  }
  if (!last()) {
    const Segment& out = segs[bounds[stage_].second - 1];
    cutOut_ = out.name;
    forwardOut_ =
        std::make_unique<CutCodec>(sp.activationCodec, out.output, "model.split.activation_codec");
    backwardIn_ = std::make_unique<CutCodec>(sp.gradientCodec, Quantizer(nullptr),
                                             "model.split.gradient_codec");
  }
}

Pipeline::~Pipeline() {
  // After a failed step sends may still be in flight, and a peer may yet read their buffers: those
  // are left allocated rather than waited for, so that the error surfaces at once.
  for (auto& o : outgoing_) {
    const bool done =
        std::all_of(o->works.begin(), o->works.end(), [](const auto& w) { return w->completed(); });
    if (!done) static_cast<void>(o.release());
  }
}

Bytes Pipeline::encode(const CutCodec& codec, const at::Tensor& x, uint64_t key,
                       const std::string& what) const {
  try {
    return codec.encode(x, key);
  } catch (const Error& e) {
    const std::string& cut = &codec == backwardOut_.get() ? cutIn_ : cutOut_;
    CDL_THROW("stage ", stage_, " of replica ", grid_.replica(), ": coding ", what,
              " at the cut after '", cut, "' (", codec.describe(), "): ", errorBody(e.what()));
  }
}

void Pipeline::post(int toStage, Bytes message, uint64_t tag) {
  auto o = std::make_unique<Outgoing>();
  o->length = message.size();
  o->message = std::move(message);
  o->what = "sending to stage " + std::to_string(toStage);
  comm::Communicator& p = *grid_.pipe;
  o->works.push_back(p.sendRecv(&o->length, sizeof(o->length), toStage, nullptr, 0, toStage, tag));
  o->works.push_back(
      p.sendRecv(o->message.data(), o->message.size(), toStage, nullptr, 0, toStage, tag));
  const uint64_t bytes = o->message.size() + sizeof(o->length);
  stats_.wireBytes += bytes;
  (tag == kForward ? stats_.forwardBytes : stats_.backwardBytes) += bytes;
  outgoing_.push_back(std::move(o));
}

Bytes Pipeline::receive(int fromStage, uint64_t tag, const std::string& what) {
  progress();
  comm::Communicator& p = *grid_.pipe;
  try {
    uint64_t length = 0;
    p.sendRecv(nullptr, 0, fromStage, &length, sizeof(length), fromStage, tag)->wait();
    CDL_CHECK(length <= kMaxMessage, "a message of ", length, " bytes (at most ", kMaxMessage, ")");
    Bytes b(static_cast<size_t>(length));
    p.sendRecv(nullptr, 0, fromStage, b.data(), b.size(), fromStage, tag)->wait();
    return b;
  } catch (const Error& e) {
    CDL_THROW("stage ", stage_, " of replica ", grid_.replica(), ": ", what, " from stage ",
              fromStage, " (rank ", grid_.replica() * stages_ + fromStage,
              "): ", errorBody(e.what()));
  }
}

void Pipeline::progress() {
  // Polling drives the transport (MPI progresses a rendezvous only inside its calls).
  outgoing_.erase(std::remove_if(outgoing_.begin(), outgoing_.end(),
                                 [](const std::unique_ptr<Outgoing>& o) {
                                   return std::all_of(o->works.begin(), o->works.end(),
                                                      [](const auto& w) { return w->completed(); });
                                 }),
                  outgoing_.end());
}

void Pipeline::drain() {
  for (auto& o : outgoing_) {
    for (auto& w : o->works) {
      try {
        w->wait();
      } catch (const Error& e) {
        CDL_THROW("stage ", stage_, " of replica ", grid_.replica(), ": ", o->what, ": ",
                  errorBody(e.what()));
      }
    }
  }
  outgoing_.clear();
}

// The micro-batches of one step on this stage: part k is examples [offsets[k], offsets[k + 1]) of
// the batch; its input (the decoded activation, or the batch's slice), its output (the scaled
// loss on the last stage, the activation sent on elsewhere) and a CDL model's rate parts.
struct Pipeline::Parts {
  int64_t batch = 0;
  std::vector<int64_t> offsets;
  std::vector<at::Tensor> inputs, outputs;
  std::vector<CdlTraining::RateParts> rates, totals;
  double loss = 0.0, correct = 0.0;  // the last stage's sums over the parts
};

bool Pipeline::forwardBackward(const StepSetup& s, int64_t step, const at::Tensor& x,
                               const at::Tensor& y, StepMetrics& m) {
  const Replica& r = s.replica;
  stats_ = CutStats{};
  Parts p;
  p.batch = x.size(0);
  const int64_t parts = std::min<int64_t>(microBatches_, p.batch);
  r.reducer.setBackwardsPerStep(static_cast<int>(parts));
  stats_.microBatches = parts;
  p.inputs.resize(parts);
  p.outputs.resize(parts);
  p.rates.resize(parts);
  p.totals.resize(parts);
  p.offsets.assign(parts + 1, 0);
  for (int64_t k = 0; k < parts; ++k) {
    p.offsets[k + 1] = p.offsets[k] + p.batch / parts + (k < p.batch % parts ? 1 : 0);
  }
  for (int64_t k = 0; k < parts; ++k) forwardPart(r, step, x, y, k, p);
  if (r.cdl) totalRates(p);
  for (int64_t k = parts - 1; k >= 0; --k) backwardPart(r, step, k, p, m);
  m.loss = p.loss;
  m.correct = p.correct;
  m.count = last() ? p.batch : 0;
  return last();
}

void Pipeline::forwardPart(const Replica& r, int64_t step, const at::Tensor& x, const at::Tensor& y,
                           int64_t k, Parts& p) {
  const int64_t at = p.offsets[k], n = p.offsets[k + 1] - p.offsets[k];
  const std::string part = "micro-batch " + std::to_string(k);
  at::Tensor in;
  if (first()) {
    in = x.narrow(0, at, n);
  } else {
    const std::string what = "the activation of " + part + " at the cut after '" + cutIn_ + "'";
    in = forwardIn_->decode(receive(stage_ - 1, kForward, what), what);
    CDL_CHECK(in.dim() >= 1 && in.size(0) == n, what, ": ", in.dim() ? in.size(0) : 0,
              " examples, expected ", n);
    in.requires_grad_(true);
  }
  if (r.cdl) r.cdl->setExampleOffset(at);
  at::Tensor out = net_.forward(in);
  if (r.cdl) p.rates[k] = r.cdl->rateParts();
  if (last()) {
    const at::Tensor yk = y.narrow(0, at, n);
    p.outputs[k] = at::cross_entropy_loss(out, yk, {}, at::Reduction::Sum) / p.batch;
    p.loss += p.outputs[k].item<double>();
    p.correct += at::argmax(out, 1).eq(yk).sum().item<double>();
  } else {
    const uint64_t key = kernels::roundingKey(seed_ ^ kCutStream, static_cast<uint64_t>(step),
                                              static_cast<uint64_t>(2 * k));
    post(stage_ + 1, encode(*forwardOut_, out, key, "the activation of " + part), kForward);
    stats_.forwardElements += static_cast<uint64_t>(out.numel());
    stats_.fp32Bytes += 4 * static_cast<uint64_t>(out.numel());
    p.outputs[k] = out;
  }
  p.inputs[k] = in;
}

void Pipeline::totalRates(Parts& p) {
  // A CDL model's rate: this stage's sums over the whole model's counts, per micro-batch.
  std::vector<float> v;
  for (const auto& q : p.rates) {
    v.insert(v.end(),
             {static_cast<float>(q.weightBits), static_cast<float>(q.weightElements),
              static_cast<float>(q.activationBits), static_cast<float>(q.activationElements)});
  }
  v = sumOverRanks(*grid_.pipe, std::move(v));
  for (size_t k = 0; k < p.totals.size(); ++k) {
    p.totals[k].weightBits = v[4 * k];
    p.totals[k].weightElements = v[4 * k + 1];
    p.totals[k].activationBits = v[4 * k + 2];
    p.totals[k].activationElements = v[4 * k + 3];
  }
}

void Pipeline::backwardPart(const Replica& r, int64_t step, int64_t k, Parts& p, StepMetrics& m) {
  const std::string part = "micro-batch " + std::to_string(k);
  std::vector<at::Tensor> roots{p.outputs[k]}, grads;
  if (last()) {
    grads.push_back(at::ones({}, p.outputs[k].options()));
  } else {
    const std::string what = "the gradient of " + part + " at the cut after '" + cutOut_ + "'";
    at::Tensor g = backwardIn_->decode(receive(stage_ + 1, kBackward, what), what);
    CDL_CHECK(g.sizes() == p.outputs[k].sizes(), what, ": shape ", g.sizes(), ", expected ",
              p.outputs[k].sizes());
    grads.push_back(g);
  }
  if (r.cdl) {
    const CdlTraining::Rate rate = r.cdl->rate(step, p.rates[k], p.totals[k]);
    if (rate.loss.requires_grad()) {  // a constant without a rate term of weight > 0
      roots.push_back(rate.loss / static_cast<double>(p.inputs.size()));
      grads.push_back(at::ones({}, rate.loss.options()));
    }
    m.weightBits = rate.weightBits;
    m.activationBits = rate.activationBits;
  }
  torch::autograd::backward(roots, grads);
  if (first()) return;
  const at::Tensor g = p.inputs[k].grad();
  CDL_CHECK(g.defined(), "stage ", stage_, ": no gradient reached the input of ", part);
  const uint64_t key = kernels::roundingKey(seed_ ^ kCutStream, static_cast<uint64_t>(step),
                                            static_cast<uint64_t>(2 * k + 1));
  post(stage_ - 1, encode(*backwardOut_, g, key, "the gradient of " + part), kBackward);
  stats_.backwardElements += static_cast<uint64_t>(g.numel());
  stats_.fp32Bytes += 4 * static_cast<uint64_t>(g.numel());
}

void Pipeline::finish(StepMetrics& m) {
  drain();
  m.cutWireBytes = stats_.wireBytes;
  m.cutFp32Bytes = stats_.fp32Bytes;
  m.cutForwardBytes = stats_.forwardBytes;
  m.cutForwardElements = stats_.forwardElements;
  m.cutBackwardBytes = stats_.backwardBytes;
  m.cutBackwardElements = stats_.backwardElements;
  m.microBatches = last() ? 0 : stats_.microBatches;
}

Evaluation Pipeline::evaluate(const Replica&, const ImageSet& test) {
  at::NoGradGuard noGrad;
  net_.eval();
  const std::vector<int64_t> idx = evalShard(test.count, grid_.replica(), grid_.replicas());
  double lossSum = 0.0, correct = 0.0;
  constexpr size_t kBatch = 1000;
  try {
    for (size_t b = 0, i = 0; b < idx.size(); b += kBatch, ++i) {
      auto [x, y] = makeBatch(test, idx, b, std::min(idx.size(), b + kBatch));
      at::Tensor in = x;
      if (!first()) {
        const std::string what = "the activation of test batch " + std::to_string(i) +
                                 " at the cut after '" + cutIn_ + "'";
        in = forwardIn_->decode(receive(stage_ - 1, kForward, what), what);
      }
      const at::Tensor out = net_.forward(in);
      if (last()) {
        lossSum += at::cross_entropy_loss(out, y, {}, at::Reduction::Sum).item<double>();
        correct += at::argmax(out, 1).eq(y).sum().item<double>();
      } else {
        const uint64_t key =
            kernels::roundingKey(seed_ ^ kCutStream ^ 1, std::numeric_limits<uint64_t>::max(), i);
        post(stage_ + 1,
             encode(*forwardOut_, out, key, "the activation of test batch " + std::to_string(i)),
             kForward);
      }
    }
    drain();
  } catch (...) {
    net_.train();
    throw;
  }
  net_.train();
  const double count = last() ? static_cast<double>(idx.size()) : 0.0;
  const auto total = sumOverRanks(
      *grid_.world,
      {static_cast<float>(lossSum), static_cast<float>(correct), static_cast<float>(count)});
  return {total[0] / total[2], total[1] / total[2]};
}

CdlReport Pipeline::joinReports(const CdlReport& own) const {
  nlohmann::json j;
  j["weights"] = nlohmann::json::array();
  for (const CdlWeightReport& w : own.weights) {
    j["weights"].push_back(
        {w.name, w.numel, w.bits, w.step, w.entropyBits, w.codedBytes, w.kappa, w.offNearest});
  }
  j["activations"] = nlohmann::json::array();
  for (const CdlActivationReport& a : own.activations) {
    j["activations"].push_back({a.name, a.bits, a.step, a.entropyBits, a.kappa});
  }
  j["coded"] = own.codedWeightBytes;
  j["other"] = own.otherBytes;
  const std::string text = j.dump();
  Bytes all;
  std::vector<size_t> sizes;
  grid_.pipe->allgatherv(Bytes(text.begin(), text.end()), &all, &sizes)->wait();
  CdlReport out;
  double weighted = 0.0, off = 0.0;
  int64_t total = 0;
  for (size_t s = 0, at = 0; s < sizes.size(); at += sizes[s++]) {
    const nlohmann::json r = nlohmann::json::parse(
        std::string(reinterpret_cast<const char*>(all.data()) + at, sizes[s]));
    for (const auto& w : r["weights"]) {
      CdlWeightReport x{w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
      weighted += x.entropyBits * static_cast<double>(x.numel);
      off += x.offNearest * static_cast<double>(x.numel);
      total += x.numel;
      out.weights.push_back(x);
    }
    for (const auto& a : r["activations"]) {
      out.activations.push_back(CdlActivationReport{a[0], a[1], a[2], a[3], a[4]});
    }
    out.codedWeightBytes += r["coded"].get<uint64_t>();
    out.otherBytes += r["other"].get<uint64_t>();
  }
  out.bitsPerWeight = total > 0 ? weighted / static_cast<double>(total) : 0.0;
  out.offNearest = total > 0 ? off / static_cast<double>(total) : 0.0;
  out.codedBitsPerWeight =
      total > 0 ? 8.0 * static_cast<double>(out.codedWeightBytes) / static_cast<double>(total)
                : 0.0;
  return out;
}

}  // namespace cdl::core
