// The payload scheme: a codec's payloads through the compressed allreduce (Note [Compressed
// allreduce]) with error feedback, and its type (Note [Scheme registry]): the families of the
// lossy codecs and their grids, measured by encoding and decoding for real.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "comm/codec/codec.h"
#include "comm/reduce/scheme_type.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::comm {
namespace {

// Stochastic rounding of the measurements: any fixed stream, the same on every rank.
constexpr uint64_t kMeasureKey = 0x4c47726563ull;  // "LGrec"

// Payload codecs through the compressed allreduce, one error-feedback residual per bucket.
class PayloadScheme : public ReductionScheme {
 public:
  PayloadScheme(const SchemeSpec& spec, std::vector<BucketTensor> tensors,
                const SchemeOptions& options)
      : spec_(spec),
        tensors_(std::move(tensors)),
        options_(options),
        codec_(makeCodec(spec.codec.codec)) {
    int64_t numel = 0;
    for (const BucketTensor& t : tensors_) numel = std::max(numel, t.offset + t.numel());
    numel_ = numel;
    if (options_.errorFeedback) residual_.assign(static_cast<size_t>(numel_), 0.0f);
  }

  const SchemeSpec& spec() const override { return spec_; }

  void reduce(Communicator& comm, float* data, int bucket, uint64_t step,
              AllreduceStats* stats) override {
    CompressedAllreduceOptions opt;
    opt.average = true;
    opt.residual = residual_.empty() ? nullptr : residual_.data();
    opt.timeoutSeconds = options_.timeoutSeconds;
    opt.segmentBytes = options_.segmentBytes;
    opt.roundingKey = kernels::roundingKey(options_.seed, step, static_cast<uint64_t>(bucket));
    compressedAllreduce(comm, *codec_, spec_.codec.rate, data, numel_, opt, stats);
  }

  void saveState(SchemeState* out) const override {
    for (const BucketTensor& t : tensors_) {
      (*out)[t.name]["residual"] =
          residual_.empty() ? std::vector<float>()
                            : std::vector<float>(residual_.begin() + t.offset,
                                                 residual_.begin() + t.offset + t.numel());
    }
  }

  void checkState(const SchemeState& in) const override {
    for (const BucketTensor& t : tensors_) {
      const std::vector<float>& values = stateField(in, t.name, "residual");
      requireStateFields(in, t.name, {"residual"});
      const size_t want = residual_.empty() ? 0 : static_cast<size_t>(t.numel());
      CDL_CHECK(values.size() == want, "reducer: saved error feedback of '", t.name, "' has ",
                values.size(), " values, expected ", want);
      for (size_t j = 0; j < values.size(); ++j) {
        CDL_CHECK(std::isfinite(values[j]), "reducer: saved error feedback of '", t.name,
                  "' holds ", values[j], " at element ", j);
      }
    }
  }

  void loadState(const SchemeState& in) override {
    for (const BucketTensor& t : tensors_) {
      const std::vector<float>& values = in.at(t.name).at("residual");
      std::copy(values.begin(), values.end(), residual_.begin() + t.offset);
    }
  }

 private:
  SchemeSpec spec_;
  std::vector<BucketTensor> tensors_;
  SchemeOptions options_;
  std::unique_ptr<Codec> codec_;
  int64_t numel_ = 0;
  std::vector<float> residual_;
};

class PayloadSchemeType final : public SchemeType {
 public:
  SchemeId id() const override { return SchemeId::kPayload; }
  std::vector<std::string> families() const override { return {"qsgd", "topk"}; }
  std::string family(const SchemeSpec& spec) const override { return codecName(spec.codec.codec); }

  // qsgd bits 2..8 x buckets {128, 512, 1024, 4096} x stochastic or nearest rounding (error
  // feedback carries what nearest rounding's bias loses); top-k densities 0.1% .. 10%, 7
  // log-spaced; both with the uniform scheme's entropy stage where it is of their codec.
  std::vector<SchemeSpec> candidates(const std::string& family,
                                     const SchemeSpec& uniform) const override {
    std::vector<SchemeSpec> out;
    SchemeSpec s;
    if (family == "qsgd") {
      s.codec.codec = CodecId::kQsgd;
      s.codec.rate = uniform.codec.codec == CodecId::kQsgd ? uniform.codec.rate : LayerRate{};
      for (int bits = 2; bits <= 8; ++bits) {
        for (int64_t bucket : {128, 512, 1024, 4096}) {
          for (kernels::Rounding r :
               {kernels::Rounding::kStochastic, kernels::Rounding::kNearest}) {
            s.codec.rate.bits = bits;
            s.codec.rate.bucket = bucket;
            s.codec.rate.rounding = r;
            out.push_back(s);
          }
        }
      }
    } else if (family == "topk") {
      s.codec.codec = CodecId::kTopk;
      for (int i = 0; i < 7; ++i) {
        s.codec.rate.density = 0.001 * std::pow(100.0, i / 6.0);
        out.push_back(s);
      }
    }
    return out;
  }

  bool applies(const SchemeSpec& spec, int64_t rows, int64_t cols) const override {
    if (spec.codec.codec == CodecId::kTopk) {
      return spec.codec.rate.density * double(rows * cols) >= 1.0;
    }
    return true;
  }

  // Encoded and decoded for real (top-k keeps at least one element where it does not apply).
  CandidateCost measure(const float* g, int64_t rows, int64_t cols, const SchemeSpec& spec,
                        int ranks) const override {
    const int64_t n = rows * cols;
    const std::unique_ptr<Codec> codec = makeCodec(spec.codec.codec);
    if (codec->lossless()) return {true, 0.0, collectiveWireBytes(4.0 * double(n), ranks, true)};
    const Bytes payload = codec->encode(g, n, spec.codec.rate, kMeasureKey);
    std::vector<float> back(static_cast<size_t>(n));
    codec->decode(payload, back.data(), n);
    return {true, l2Distance(g, back.data(), n),
            collectiveWireBytes(double(payload.size()), ranks, codec->summable())};
  }

  // A payload scheme keeps the residual and no factors.
  void adoptState(const SchemeSpec&, const SchemeSpec&, int64_t, uint64_t,
                  TensorState& state) const override {
    state.erase("q");
  }

  std::unique_ptr<ReductionScheme> make(const SchemeSpec& spec, std::vector<BucketTensor> tensors,
                                        const SchemeOptions& options) const override {
    return std::make_unique<PayloadScheme>(spec, std::move(tensors), options);
  }
};

}  // namespace

const SchemeType& payloadSchemeType() {
  static const PayloadSchemeType type;
  return type;
}

}  // namespace cdl::comm
