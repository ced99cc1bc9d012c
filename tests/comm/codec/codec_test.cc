#include "comm/codec/codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "comm/codec/registry.h"
#include "comm/codec/spec.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"
#include "tests/support/error_of.h"
#include "tests/support/gradient_like.h"

namespace cdl::comm {
namespace {

using test::gradientLike;

struct Case {
  std::string spec;
  int64_t n;
};

class CodecRoundTrip : public ::testing::TestWithParam<Case> {};

// The error every codec promises per element, given the input and the codec's rate.
void expectWithinBound(const CodecSpec& s, const std::vector<float>& x,
                       const std::vector<float>& y) {
  const int64_t n = static_cast<int64_t>(x.size());
  switch (s.codec) {
    case CodecId::kNone:
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], y[i]) << i;
      break;
    case CodecId::kFp16:
    case CodecId::kBf16: {
      const float rel = s.codec == CodecId::kFp16 ? 0x1.0p-11f : 0x1.0p-8f;
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_LE(std::fabs(x[i] - y[i]), std::fabs(x[i]) * rel + 6e-8f) << i;
      }
      break;
    }
    case CodecId::kQsgd: {
      const int64_t bucket = s.rate.bucket;
      const float intervals = s.rate.bits == 1 ? 1.0f : float((1 << s.rate.bits) - 2);
      for (int64_t b = 0; b * bucket < n; ++b) {
        float m = 0.0f;
        const int64_t end = std::min(n, (b + 1) * bucket);
        for (int64_t i = b * bucket; i < end; ++i) m = std::max(m, std::fabs(x[i]));
        const float step = 2.0f * m / intervals;
        const float bound =
            (s.rate.rounding == kernels::Rounding::kNearest ? 0.5f : 1.0f) * step * 1.0001f;
        for (int64_t i = b * bucket; i < end; ++i) ASSERT_LE(std::fabs(x[i] - y[i]), bound) << i;
      }
      break;
    }
    case CodecId::kTopk: {
      int64_t kept = 0;
      float minKept = INFINITY, maxDropped = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        if (y[i] != 0.0f) {
          ASSERT_EQ(y[i], x[i]) << i;
          ++kept;
          minKept = std::min(minKept, std::fabs(x[i]));
        } else {
          maxDropped = std::max(maxDropped, std::fabs(x[i]));
        }
      }
      const int64_t k = n == 0 ? 0 : std::max<int64_t>(1, std::llround(s.rate.density * n));
      EXPECT_LE(kept, k);
      if (kept > 0) {
        EXPECT_LE(maxDropped, minKept);
      }
      break;
    }
  }
}

TEST_P(CodecRoundTrip, DecodedValuesStayWithinTheCodecBound) {
  const CodecSpec s = parseCodecSpec(GetParam().spec);
  const int64_t n = GetParam().n;
  auto codec = makeCodec(s.codec);
  const auto x = gradientLike(n, 7 + n);
  const Bytes p = codec->encode(x.data(), n, s.rate);
  EXPECT_LE(p.size(), codec->maxEncodedBytes(n, s.rate));
  std::vector<float> y(static_cast<size_t>(n), 123.0f);
  codec->decode(p, y.data(), n);
  expectWithinBound(s, x, y);
}

TEST_P(CodecRoundTrip, AccumulateAddsTheDecodedValues) {
  const CodecSpec s = parseCodecSpec(GetParam().spec);
  const int64_t n = GetParam().n;
  auto codec = makeCodec(s.codec);
  const auto x = gradientLike(n, 11 + n);
  const Bytes p = codec->encode(x.data(), n, s.rate);
  std::vector<float> once(static_cast<size_t>(n)), acc(static_cast<size_t>(n), 0.5f);
  codec->decode(p, once.data(), n);
  codec->decode(p, acc.data(), n, /*accumulate=*/true);
  for (int64_t i = 0; i < n; ++i) ASSERT_FLOAT_EQ(acc[i], once[i] + 0.5f) << i;
}

TEST_P(CodecRoundTrip, EverySingleBitFlipIsRejected) {
  const CodecSpec s = parseCodecSpec(GetParam().spec);
  const int64_t n = std::min<int64_t>(GetParam().n, 300);
  auto codec = makeCodec(s.codec);
  const auto x = gradientLike(n, 3);
  const Bytes p = codec->encode(x.data(), n, s.rate);
  std::vector<float> y(static_cast<size_t>(n));
  for (size_t bit = 0; bit < p.size() * 8; ++bit) {
    Bytes q = p;
    q[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_THROW(codec->decode(q, y.data(), n), Error) << "bit " << bit;
  }
}

TEST_P(CodecRoundTrip, EveryTruncationIsRejected) {
  const CodecSpec s = parseCodecSpec(GetParam().spec);
  const int64_t n = std::min<int64_t>(GetParam().n, 300);
  auto codec = makeCodec(s.codec);
  const auto x = gradientLike(n, 5);
  const Bytes p = codec->encode(x.data(), n, s.rate);
  std::vector<float> y(static_cast<size_t>(n));
  for (size_t len = 0; len < p.size(); ++len) {
    EXPECT_THROW(codec->decode(p.data(), len, y.data(), n, false), Error) << "length " << len;
  }
}

TEST_P(CodecRoundTrip, SameKeyGivesIdenticalBytes) {
  const CodecSpec s = parseCodecSpec(GetParam().spec);
  const int64_t n = GetParam().n;
  auto codec = makeCodec(s.codec);
  const auto x = gradientLike(n, 9);
  EXPECT_EQ(codec->encode(x.data(), n, s.rate), codec->encode(x.data(), n, s.rate));
}

std::vector<Case> allCases() {
  const std::vector<std::string> specs = {
      "none",
      "fp16",
      "bf16",
      "qsgd:bits=1,bucket=64,rounding=nearest,entropy=none",
      "qsgd:bits=2,bucket=512,rounding=stochastic,entropy=rans",
      "qsgd:bits=4,bucket=1024,rounding=nearest,entropy=rans",
      "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=none",
      "qsgd:bits=8,bucket=7,rounding=stochastic,entropy=rans",
      "topk:density=0.01,entropy=rans",
      "topk:density=0.3,entropy=none",
  };
  std::vector<Case> cases;
  for (const auto& s : specs) {
    for (int64_t n : {0, 1, 7, 1000, 65537}) cases.push_back({s, n});
  }
  return cases;
}

std::string caseName(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.spec + "_n" + std::to_string(info.param.n);
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecRoundTrip, ::testing::ValuesIn(allCases()), caseName);

TEST(Codec, LossyCodecsRejectNanAndInfinityNamingTheElement) {
  for (const char* spec : {"fp16", "bf16", "qsgd", "topk"}) {
    auto codec = makeCodec(parseCodecSpec(spec).codec);
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      std::vector<float> x(100, 0.25f);
      x[42] = bad;
      try {
        codec->encode(x.data(), 100, LayerRate{});
        ADD_FAILURE() << spec << " accepted " << bad;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("42"), std::string::npos) << e.what();
      }
    }
  }
}

TEST(Codec, Fp16RejectsValuesBeyondItsRange) {
  std::vector<float> x(10, 1.0f);
  x[3] = 1e6f;
  EXPECT_THROW(makeCodec("fp16")->encode(x.data(), 10, LayerRate{}), Error);
  EXPECT_NO_THROW(makeCodec("bf16")->encode(x.data(), 10, LayerRate{}));
}

TEST(Codec, DecodingWithAnotherCodecOrCountIsAnError) {
  const auto x = gradientLike(100, 1);
  const Bytes p = makeCodec("fp16")->encode(x.data(), 100, LayerRate{});
  std::vector<float> y(100);
  EXPECT_THROW(makeCodec("bf16")->decode(p, y.data(), 100), Error);
  EXPECT_THROW(makeCodec("fp16")->decode(p, y.data(), 99), Error);
  EXPECT_NO_THROW(makeCodec("fp16")->decode(p, y.data(), 100));
}

TEST(Codec, StochasticQsgdIsUnbiasedOverKeys) {
  const int64_t n = 64;
  const auto x = gradientLike(n, 21);
  auto codec = makeCodec("qsgd");
  LayerRate r;
  r.bits = 2;
  r.bucket = 64;
  std::vector<double> mean(n, 0.0);
  std::vector<float> y(n);
  const int trials = 4000;
  for (int t = 0; t < trials; ++t) {
    const uint64_t key = kernels::roundingKey(1, static_cast<uint64_t>(t), 0);
    codec->decode(codec->encode(x.data(), n, r, key), y.data(), n);
    for (int64_t i = 0; i < n; ++i) mean[i] += y[i];
  }
  float m = 0.0f;
  for (float v : x) m = std::max(m, std::fabs(v));
  const double step = m;                                        // 2 bits: L = 2 intervals of m each
  const double sigma = step / 2.0 / std::sqrt(double(trials));  // Bernoulli std <= step/2
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(mean[i] / trials, x[i], 5 * sigma) << i;
}

TEST(Codec, RansStageShrinksQuantizedGradients) {
  const int64_t n = 1 << 18;
  const auto x = gradientLike(n, 4);
  auto codec = makeCodec("qsgd");
  LayerRate packed, coded;
  packed.entropy = EntropyStage::kNone;
  coded.entropy = EntropyStage::kRans;
  const size_t a = codec->encode(x.data(), n, packed).size();
  const size_t b = codec->encode(x.data(), n, coded).size();
  EXPECT_LT(b, a * 0.9) << "packed " << a << " vs rans " << b;
}

TEST(CodecSpec, ParsesAndFormatsEveryKey) {
  const CodecSpec s = parseCodecSpec("qsgd:bits=3,bucket=256,rounding=nearest,entropy=none");
  EXPECT_EQ(s.codec, CodecId::kQsgd);
  EXPECT_EQ(s.rate.bits, 3);
  EXPECT_EQ(s.rate.bucket, 256);
  EXPECT_EQ(s.rate.rounding, kernels::Rounding::kNearest);
  EXPECT_EQ(s.rate.entropy, EntropyStage::kNone);
  EXPECT_EQ(formatCodecSpec(s), "qsgd:bits=3,bucket=256,rounding=nearest,entropy=none");
  EXPECT_DOUBLE_EQ(parseCodecSpec("topk:density=0.05").rate.density, 0.05);
}

// Every codec of the registry (Note [Codec registry]) is made by its name and its id, names
// itself, and its spec with every key written back parses to the same spec.
TEST(CodecRegistry, EveryEntryIsMadeByNameAndIdAndItsSpecRoundTrips) {
  ASSERT_FALSE(codecRegistry().empty());
  for (const CodecEntry& e : codecRegistry()) {
    EXPECT_EQ(makeCodec(e.name)->id(), e.id) << e.name;
    EXPECT_EQ(makeCodec(e.id)->name(), e.name);
    EXPECT_EQ(codecName(e.id), e.name);
    EXPECT_NE(codecNames().find(e.name), std::string::npos) << codecNames();
    CodecSpec spec;
    spec.codec = e.id;
    const std::string text = formatCodecSpec(spec);
    const CodecSpec back = parseCodecSpec(text);
    EXPECT_EQ(back.codec, e.id) << text;
    EXPECT_EQ(formatCodecSpec(back), text);
    for (const RateKey& k : e.keys) {
      EXPECT_NE(text.find(std::string(k.name) + "="), std::string::npos) << text << " " << k.name;
    }
  }
  EXPECT_EQ(codecName(static_cast<CodecId>(200)), "codec#200");
}

TEST(CodecSpec, PowerSgdIsNotAPayloadCodec) {
  EXPECT_THROW(makeCodec(static_cast<CodecId>(codecRegistry().size())), Error);
  EXPECT_THROW(makeCodec("powersgd"), Error);
  EXPECT_THROW(parseCodecSpec("powersgd:rank=8"), Error);
}

TEST(Codec, EachCodecSaysWhatACollectiveNeedsOfIt) {
  LayerRate rate;
  rate.bucket = 512;
  EXPECT_TRUE(makeCodec("none")->lossless());
  for (const char* lossy : {"fp16", "bf16", "qsgd", "topk"}) {
    EXPECT_FALSE(makeCodec(lossy)->lossless()) << lossy;
  }
  EXPECT_EQ(makeCodec("qsgd")->chunkAlignment(rate), 512);
  EXPECT_EQ(makeCodec("fp16")->chunkAlignment(rate), 1);
  EXPECT_TRUE(makeCodec("qsgd")->summable());
  EXPECT_FALSE(makeCodec("topk")->summable());
}

TEST(CodecSpec, BadSpecsNameTheProblem) {
  auto message = [](const std::string& spec) {
    return test::errorOf([&] { parseCodecSpec(spec); });
  };
  EXPECT_NE(message("zip").find("unknown codec 'zip' (expected none, fp16, bf16, qsgd or topk)"),
            std::string::npos);
  EXPECT_NE(message("qsgd:bits=9").find("bits must be 1..8"), std::string::npos);
  EXPECT_NE(message("qsgd:bits=four").find("not an integer"), std::string::npos);
  EXPECT_NE(message("qsgd:density=0.1").find("unknown key 'density'"), std::string::npos);
  EXPECT_NE(message("topk:density=0").find("density must be in (0, 1]"), std::string::npos);
  EXPECT_NE(message("fp16:bits=4").find("unknown key"), std::string::npos);
  EXPECT_NE(message("qsgd:rank=2").find("unknown key 'rank'"), std::string::npos);
}

}  // namespace
}  // namespace cdl::comm
