#include "core/model_file/model_codec.h"

#include <ATen/ops/from_blob.h>
#include <torch/nn/module.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "core/cdl/cdl_layers.h"
#include "core/run/files.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

using nlohmann::json;

// Candidate steps for post-training quantization, as fractions of max|w| / 2^(bits-1).
constexpr int kStepCandidates = 100;

template <typename T>
T field(const json& j, const char* key, const std::string& where) {
  CDL_CHECK(j.is_object() && j.contains(key), "model description: ", where, key, " is missing");
  try {
    return j.at(key).get<T>();
  } catch (const std::exception&) {
    CDL_THROW("model description: ", where, key, " has the wrong type");
  }
}

// The step of least squared error for w at `bits` signed levels, and w's symbols at that step.
float ptqStep(const float* w, int64_t n, int bits) {
  float maxAbs = 0.0f;
  for (int64_t i = 0; i < n; ++i) maxAbs = std::max(maxAbs, std::fabs(w[i]));
  if (maxAbs == 0.0f) return 1.0f;
  const double lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  float best = 0.0f;
  double bestErr = 0.0;
  for (int c = 1; c <= kStepCandidates; ++c) {
    const float q = static_cast<float>(maxAbs / (1 << (bits - 1)) * c / kStepCandidates);
    double err = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double level = std::clamp(std::nearbyint(double(w[i]) / q), lo, hi);
      const double d = double(w[i]) - level * q;
      err += d * d;
    }
    if (best == 0.0f || err < bestErr) {
      best = q;
      bestErr = err;
    }
  }
  return best;
}

ModelTensor quantizedTensor(const std::string& name, const at::Tensor& w, int bits, float step,
                            std::vector<uint8_t> symbols) {
  ModelTensor t;
  t.name = name;
  t.shape = w.sizes().vec();
  t.kind = TensorKind::kQuantized;
  t.coder = TensorCoder::kRans;
  t.bits = bits;
  t.isSigned = true;
  t.step = step;
  t.symbols = std::move(symbols);
  return t;
}

ModelTensor ptqTensor(const std::string& name, const at::Tensor& weight, int bits) {
  const at::Tensor w = weight.detach().contiguous();
  const float* p = w.data_ptr<float>();
  const int64_t n = w.numel();
  const float q = ptqStep(p, n, bits);
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::vector<uint8_t> sym(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double level = std::clamp(std::nearbyint(double(p[i]) / q), double(lo), double(hi));
    sym[i] = static_cast<uint8_t>(static_cast<int>(level) - lo);
  }
  return quantizedTensor(name, weight, bits, q, std::move(sym));
}

ModelTensor plainTensor(const std::string& name, const at::Tensor& v, bool fp16) {
  ModelTensor t;
  t.name = name;
  t.shape = v.sizes().vec();
  const at::Tensor c = v.detach().contiguous();
  if (c.scalar_type() == at::kLong) {
    t.kind = TensorKind::kInt64;
    t.coder = TensorCoder::kInt64;
    t.ints.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  } else {
    CDL_CHECK(c.scalar_type() == at::kFloat, "tensor '", name, "' is ", c.scalar_type(),
              ", not float or int64");
    t.kind = TensorKind::kFloat;
    t.coder = fp16 ? TensorCoder::kFp16 : TensorCoder::kFp32;
    t.values.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  return t;
}

// Every parameter and buffer of the model by name, in module order.
std::vector<std::pair<std::string, at::Tensor>> namedTensors(torch::nn::Module& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model.named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

// The weights of the model's convolution and linear layers, in module order.
std::vector<std::string> layerWeights(torch::nn::Module& model) {
  std::vector<std::string> out;
  for (const auto& m : model.named_modules()) {
    if (std::dynamic_pointer_cast<QLinearImpl>(m.value()) != nullptr ||
        std::dynamic_pointer_cast<QConv2dImpl>(m.value()) != nullptr) {
      out.push_back(m.key().empty() ? "weight" : m.key() + ".weight");
    }
  }
  return out;
}

// Gives the network's linear layers their indices from the file; returns the names of the weights
// that run straight from their streams (and need no fp32 copy).
std::set<std::string> attachIndexedWeights(Net& net, const ModelFile& file, bool stream) {
  std::set<std::string> streamed;
  for (const auto& m : net.named_modules()) {
    auto l = std::dynamic_pointer_cast<QLinearImpl>(m.value());
    if (l == nullptr) continue;
    const ModelTensor* t = file.find(m.key() + ".weight");
    if (t == nullptr || t->kind != TensorKind::kQuantized || t->shape.size() != 2) continue;
    auto w = std::make_shared<IndexedWeight>();
    w->out = t->shape[0];
    w->in = t->shape[1];
    w->lo = t->lowestLevel();
    w->bits = t->bits;
    w->step = t->step;
    if (stream && t->coder == TensorCoder::kRans) {
      w->coded = t->coded;
      streamed.insert(t->name);
    } else {
      w->symbols = t->symbols.empty() ? decodeSymbols(*t) : t->symbols;
    }
    l->setIndexedWeight(std::move(w));
  }
  return streamed;
}

at::Tensor valuesOf(const ModelTensor& t) {
  if (t.kind == TensorKind::kInt64) {
    return at::from_blob(const_cast<int64_t*>(t.ints.data()), t.shape, at::kLong).clone();
  }
  if (t.kind == TensorKind::kFloat) {
    return at::from_blob(const_cast<float*>(t.values.data()), t.shape, at::kFloat).clone();
  }
  at::Tensor w = at::empty(t.shape, at::kFloat);
  dequantize(t, w.data_ptr<float>());
  return w;
}

}  // namespace

std::string describe(const ModelDescription& d) {
  const ModelOptions& o = d.options;
  json j = {{"model", d.model},
            {"input_channels", o.inputChannels},
            {"image_height", o.imageHeight},
            {"image_width", o.imageWidth},
            {"classes", o.classes},
            {"hidden", o.hidden},
            {"width", o.width},
            {"quantization", d.quantization},
            {"bits", d.bits},
            {"dataset", d.dataset},
            {"synthetic_test", d.syntheticTest},
            {"synthetic_seed", d.syntheticSeed}};
  const CdlModelOptions& c = o.cdl;
  j["cdl"] = {{"enabled", c.enabled},  {"weight_bits", c.weightBits},
              {"act_bits", c.actBits}, {"first_last_bits", c.firstLastBits},
              {"kappa", c.kappa},      {"train_kappa", c.trainKappa},
              {"window", c.window}};
  return j.dump();
}

ModelDescription parseDescription(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  CDL_CHECK(j.is_object(), "model description: not a JSON object");
  ModelDescription d;
  d.model = field<std::string>(j, "model", "");
  ModelOptions& o = d.options;
  o.inputChannels = field<int64_t>(j, "input_channels", "");
  o.imageHeight = field<int64_t>(j, "image_height", "");
  o.imageWidth = field<int64_t>(j, "image_width", "");
  o.classes = field<int64_t>(j, "classes", "");
  o.hidden = field<int64_t>(j, "hidden", "");
  o.width = field<int64_t>(j, "width", "");
  d.quantization = field<std::string>(j, "quantization", "");
  CDL_CHECK(d.quantization == "cdl" || d.quantization == "ptq" || d.quantization == "none",
            "model description: quantization '", d.quantization, "', expected cdl, ptq or none");
  d.bits = field<int>(j, "bits", "");
  d.dataset = field<std::string>(j, "dataset", "");
  d.syntheticTest = field<int64_t>(j, "synthetic_test", "");
  d.syntheticSeed = field<uint64_t>(j, "synthetic_seed", "");
  const json c = j.contains("cdl") ? j.at("cdl") : json();
  CdlModelOptions& m = o.cdl;
  m.enabled = field<bool>(c, "enabled", "cdl.");
  m.weightBits = field<int>(c, "weight_bits", "cdl.");
  m.actBits = field<int>(c, "act_bits", "cdl.");
  m.firstLastBits = field<int>(c, "first_last_bits", "cdl.");
  m.kappa = field<double>(c, "kappa", "cdl.");
  m.trainKappa = field<bool>(c, "train_kappa", "cdl.");
  m.window = field<int>(c, "window", "cdl.");
  return d;
}

ModelFile quantizeModel(Net& model, const ModelDescription& d, const ExportOptions& opts) {
  const bool cdl = d.options.cdl.enabled;
  CDL_CHECK(cdl || (opts.bits >= 0 && opts.bits <= 8),
            "export: post-training quantization takes --bits 1..8, not ", opts.bits);
  CDL_CHECK(!cdl || opts.bits == 0, "export: this CDL model's weights are already quantized (",
            d.options.cdl.weightBits, " bits, ", d.options.cdl.firstLastBits,
            " for the first and last layers); drop --bits");
  at::NoGradGuard noGrad;
  std::map<std::string, QuantizedWeight> cdlWeights;
  for (QuantizedWeight& w : quantizedWeightsOf(model)) cdlWeights.emplace(w.name, w);
  CDL_CHECK(
      opts.firstLastBits == 0 || (!cdl && opts.bits > 0 && opts.firstLastBits <= 8),
      "export: --first-last-bits applies to post-training quantization (--bits), at 1..8 bits");
  const std::vector<std::string> layers = layerWeights(model);
  const std::set<std::string> isLayer(layers.begin(), layers.end());
  ModelFile f;
  f.meta = describe(d);
  for (const auto& [name, t] : namedTensors(model)) {
    auto q = cdlWeights.find(name);
    if (q != cdlWeights.end()) {
      const QuantizerImpl& wq = *q->second.quantizer;
      ModelTensor m = quantizedTensor(name, t, wq.options().bits,
                                      static_cast<float>(wq.stepValue()), wq.symbols(t));
      m.isSigned = wq.options().isSigned;
      f.tensors.push_back(std::move(m));
    } else if (!cdl && opts.bits > 0 && isLayer.count(name) > 0) {
      const bool end = name == layers.front() || name == layers.back();
      f.tensors.push_back(
          ptqTensor(name, t, end && opts.firstLastBits > 0 ? opts.firstLastBits : opts.bits));
    } else {
      f.tensors.push_back(plainTensor(name, t, opts.fp16));
    }
  }
  if (opts.canonical) canonicalize(f, canonicalGroups(d));
  return f;
}

std::vector<UnitGroup> canonicalGroups(const ModelDescription& d) {
  if (d.model == "mlp") {
    return {{"fc1.weight", {"fc1.bias"}, "fc2.weight", 1},
            {"fc2.weight", {"fc2.bias"}, "fc3.weight", 1}};
  }
  if (d.model == "cnn") {
    const int64_t block = (d.options.imageHeight / 4) * (d.options.imageWidth / 4);
    return {{"conv2.weight",
             {"bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var"},
             "fc1.weight",
             block},
            {"fc1.weight", {"fc1.bias"}, "fc2.weight", 1}};
  }
  return {};
}

std::shared_ptr<Net> modelFromFile(const ModelFile& file, bool stream) {
  const ModelDescription d = parseDescription(file.meta);
  std::shared_ptr<Net> net = makeModel(d.model, d.options);
  at::NoGradGuard noGrad;
  const std::set<std::string> streamed = attachIndexedWeights(*net, file, stream);
  std::set<std::string> names;
  for (auto& [name, t] : namedTensors(*net)) {
    const ModelTensor* m = file.find(name);
    CDL_CHECK(m != nullptr, "model file: the ", d.model, " network has tensor '", name,
              "' but the file does not");
    CDL_CHECK(m->shape == t.sizes().vec(), "model file: tensor '", name, "' has shape ",
              at::IntArrayRef(m->shape), ", the ", d.model, " network's is ", t.sizes());
    if (streamed.count(name) > 0) {
      t.zero_();  // the layer reads its coded stream instead
    } else {
      t.copy_(valuesOf(*m));
    }
    names.insert(name);
  }
  std::set<std::string> seen;
  for (const ModelTensor& m : file.tensors) {
    CDL_CHECK(names.count(m.name) == 1, "model file: tensor '", m.name, "' is not part of the ",
              d.model, " network");
    CDL_CHECK(seen.insert(m.name).second, "model file: tensor '", m.name, "' appears twice");
  }
  net->eval();
  return net;
}

ModelFile readModelFile(const std::string& path, bool decodeStreams) {
  std::ifstream in(path, std::ios::binary);
  CDL_CHECK(in, "model file ", path, ": cannot be opened");
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  CDL_CHECK(!in.bad(), "model file ", path, ": read error");
  try {
    ModelFile f = decodeModelFile(bytes.data(), bytes.size(), decodeStreams);
    parseDescription(f.meta);
    return f;
  } catch (const Error& e) {
    CDL_THROW("model file ", path, ": ", e.what());
  }
}

void writeModelFile(const std::string& path, ModelFile& file) {
  const std::vector<uint8_t> bytes = encodeModelFile(file);
  writeFileAtomically(path, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); });
}

}  // namespace cdl::core
