#include "core/model_file/model_codec.h"

#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/data/data.h"
#include "core/model_file/model_report.h"
#include "core/step/epoch_end.h"
#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

using test::errorOf;
using ::testing::HasSubstr;

ModelDescription description(const std::string& model, bool cdl) {
  ModelDescription d;
  d.model = model;
  d.options.inputChannels = 1;
  d.options.imageHeight = 8;
  d.options.imageWidth = 12;
  d.options.classes = 5;
  d.options.hidden = 48;
  d.options.width = 4;
  d.options.cdl.enabled = cdl;
  d.options.cdl.weightBits = 3;
  d.options.cdl.actBits = 4;
  d.quantization = cdl ? "cdl" : "ptq";
  d.bits = cdl ? 0 : 4;
  d.dataset = "synthetic";
  d.syntheticTest = 300;
  d.syntheticSeed = 9;
  return d;
}

// A model as training leaves it: random weights, batchnorm statistics and activation steps.
std::shared_ptr<Net> trainedModel(const ModelDescription& d) {
  at::manual_seed(3);
  auto net = makeModel(d.model, d.options);
  at::NoGradGuard noGrad;
  for (auto& b : net->named_buffers()) {
    if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
    if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0.0, 0.3);
  }
  for (auto& p : net->named_parameters()) {
    if (p.key().rfind("aq", 0) == 0 && p.key().find("log_step") != std::string::npos) {
      p.value().fill_(-2.0);
    }
    if (p.key().find("bn") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  net->eval();
  return net;
}

at::Tensor images(const ModelDescription& d, int64_t n = 32) {
  at::manual_seed(5);
  return at::randn({n, d.options.inputChannels, d.options.imageHeight, d.options.imageWidth});
}

ModelFile roundTrip(ModelFile& f, bool decodeStreams = true) {
  const std::vector<uint8_t> bytes = encodeModelFile(f);
  return decodeModelFile(bytes.data(), bytes.size(), decodeStreams);
}

at::Tensor logits(Net& net, const at::Tensor& x) {
  at::NoGradGuard noGrad;
  net.eval();
  return net.forward(x);
}

class ZooTest : public ::testing::TestWithParam<std::tuple<std::string, bool>> {
 protected:
  ModelDescription d = description(std::get<0>(GetParam()), std::get<1>(GetParam()));
  ExportOptions opts{d.bits, false, false};
};

// Decoding is lossless: the file's model is the in-memory quantized model, tensor for tensor,
// logit for logit; for a CDL model that is the trained model as training evaluates it.
TEST_P(ZooTest, RoundTripIsBitExactAndComputesTheInMemoryModelsLogits) {
  auto net = trainedModel(d);
  ModelFile f = quantizeModel(*net, d, opts);
  const ModelFile g = roundTrip(f);
  auto inMemory = modelFromFile(f);
  auto decoded = modelFromFile(g);
  const auto a = inMemory->named_parameters(), b = decoded->named_parameters();
  for (const auto& p : a) EXPECT_TRUE(at::equal(p.value(), b[p.key()])) << p.key();
  for (const auto& p : inMemory->named_buffers()) {
    EXPECT_TRUE(at::equal(p.value(), decoded->named_buffers()[p.key()])) << p.key();
  }
  const at::Tensor x = images(d);
  EXPECT_TRUE(at::equal(logits(*decoded, x), logits(*inMemory, x)));
  if (d.options.cdl.enabled) {
    EXPECT_TRUE(at::equal(logits(*decoded, x), logits(*net, x)));
  }
  EXPECT_GT(reportModel(g).ratioToFp32, 2.0);
}

TEST_P(ZooTest, LinearLayersStraightFromTheCodedStreamsGiveTheSameLogits) {
  auto net = trainedModel(d);
  ModelFile f = quantizeModel(*net, d, opts);
  const ModelFile streamed = roundTrip(f, false);
  for (const ModelTensor& t : streamed.tensors) EXPECT_TRUE(t.symbols.empty()) << t.name;
  const at::Tensor x = images(d);
  EXPECT_TRUE(at::equal(logits(*modelFromFile(streamed, true), x), logits(*modelFromFile(f), x)));
}

TEST_P(ZooTest, CanonicalOrderKeepsTheLogitsBitForBitAndShrinksTheFile) {
  auto net = trainedModel(d);
  ModelFile plain = quantizeModel(*net, d, opts);
  ExportOptions c = opts;
  c.canonical = true;
  ModelFile canonical = quantizeModel(*net, d, c);
  const ModelFile p = roundTrip(plain), q = roundTrip(canonical);
  const at::Tensor x = images(d);
  EXPECT_TRUE(at::equal(logits(*modelFromFile(q), x), logits(*modelFromFile(p), x)));
  EXPECT_TRUE(at::equal(logits(*modelFromFile(q, true), x), logits(*modelFromFile(p), x)));
  if (canonicalGroups(d).empty()) {
    EXPECT_EQ(canonical.fileBytes, plain.fileBytes);
    return;
  }
  // A multiset saves about the bound against the same coder's ordered stream; a layer whose
  // plain stream is smaller still (4-bit levels used about evenly, packed) keeps that.
  for (const TensorReport& t : reportModel(q).tensors) {
    if (t.coder == "row-multiset") {
      EXPECT_GT(t.savedBits, 0.9 * t.permutationBits - 64) << t.name;
    }
  }
  EXPECT_LE(canonical.fileBytes, plain.fileBytes);
  if (d.options.cdl.enabled) {
    EXPECT_LT(canonical.fileBytes, plain.fileBytes);
  }
}

TEST_P(ZooTest, AccuracyFromTheFileEqualsTheInMemoryModels) {
  auto net = trainedModel(d);
  ModelFile f = quantizeModel(*net, d, opts);
  const ModelFile g = roundTrip(f);
  const ImageSet test = makeSynthetic(d.syntheticTest, d.syntheticSeed, d.options.imageHeight,
                                      d.options.imageWidth, static_cast<int>(d.options.classes));
  auto comm = comm::makeLocalGroup(1)[0];
  const Evaluation a = evaluate(*modelFromFile(g), test, *comm);
  const Evaluation b = evaluate(*modelFromFile(f), test, *comm);
  EXPECT_EQ(a.accuracy, b.accuracy);
  EXPECT_EQ(a.loss, b.loss);
  if (d.options.cdl.enabled) {
    const Evaluation c = evaluate(*net, test, *comm);
    EXPECT_EQ(a.accuracy, c.accuracy);
    EXPECT_EQ(a.loss, c.loss);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ZooTest,
                         ::testing::Combine(::testing::Values("mlp", "cnn", "resnet20"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_cdl" : "_ptq4");
                         });

TEST(PostTrainingQuantization, EightBitsKeepsTheLogitsCloseAndFewerBitsShrinkTheFile) {
  ModelDescription d = description("mlp", false);
  auto net = trainedModel(d);
  const at::Tensor x = images(d);
  const at::Tensor ref = logits(*net, x);
  uint64_t previous = 0;
  for (int bits : {8, 4, 2}) {
    ModelFile f = quantizeModel(*net, d, {bits, false, false});
    encodeModelFile(f);
    const double err = (logits(*modelFromFile(f), x) - ref).abs().max().item<double>();
    if (bits == 8) {
      EXPECT_LT(err, 0.02 * ref.abs().max().item<double>());
    }
    if (previous > 0) {
      EXPECT_LT(f.fileBytes, previous) << bits << " bits";
    }
    previous = f.fileBytes;
  }
}

TEST(PostTrainingQuantization, FirstAndLastLayersCanKeepMoreBits) {
  ModelDescription d = description("cnn", false);
  ExportOptions o{2, false, false, 8};
  const ModelFile f = quantizeModel(*trainedModel(d), d, o);
  for (const char* name : {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}) {
    const bool end = std::string(name) == "conv1.weight" || std::string(name) == "fc2.weight";
    EXPECT_EQ(f.find(name)->bits, end ? 8 : 2) << name;
  }
  ModelDescription c = description("cnn", true);
  EXPECT_THAT(errorOf([&] {
                quantizeModel(*trainedModel(c), c, {0, false, false, 8});
              }),
              HasSubstr("--first-last-bits applies to post-training quantization"));
}

TEST(ModelCodec, FilesThatDoNotFitTheirNetworkNameTheTensor) {
  ModelDescription d = description("cnn", false);
  auto net = trainedModel(d);
  ModelFile f = quantizeModel(*net, d, {4, false, false});
  ModelFile missing = f;
  missing.tensors.erase(missing.tensors.begin() + 1);
  EXPECT_THAT(errorOf([&] { modelFromFile(missing); }),
              HasSubstr("has tensor '" + f.tensors[1].name + "' but the file does not"));
  ModelFile extra = f;
  extra.tensors.push_back(f.tensors[1]);
  extra.tensors.back().name = "head.weight";
  EXPECT_THAT(errorOf([&] { modelFromFile(extra); }), HasSubstr("'head.weight' is not part of"));
  ModelFile reshaped = f;
  reshaped.tensors[0].shape = {2, 2};
  EXPECT_THAT(errorOf([&] { modelFromFile(reshaped); }),
              HasSubstr("tensor '" + f.tensors[0].name + "' has shape [2, 2]"));
}

TEST(ModelCodec, AModelTrainedWithoutCdlExportsInFp32WithoutBits) {
  ModelDescription plain = description("cnn", false);
  plain.quantization = "none";
  plain.bits = 0;
  auto net = trainedModel(plain);
  ModelFile f = quantizeModel(*net, plain, {});
  for (const ModelTensor& t : f.tensors) EXPECT_NE(t.kind, TensorKind::kQuantized) << t.name;
  auto back = modelFromFile(f);
  EXPECT_EQ(parseDescription(f.meta).quantization, "none");
  at::manual_seed(5);
  const at::Tensor x = at::randn({6, 1, 8, 12});
  at::NoGradGuard noGrad;
  net->eval();
  EXPECT_TRUE(at::equal(back->forward(x), net->forward(x)));
  ModelDescription cdl = description("mlp", true);
  EXPECT_THAT(errorOf([&] {
                quantizeModel(*trainedModel(cdl), cdl, {4, false, false});
              }),
              HasSubstr("already quantized"));
  EXPECT_THAT(errorOf([&] {
                quantizeModel(*net, plain, {0, false, false, 8});
              }),
              HasSubstr("--first-last-bits applies to post-training quantization (--bits)"));
}

TEST(ModelCodec, DescriptionsRoundTripAndMissingKeysAreNamed) {
  const ModelDescription d = description("cnn", true);
  const ModelDescription e = parseDescription(describe(d));
  EXPECT_EQ(e.model, "cnn");
  EXPECT_EQ(e.options.width, 4);
  EXPECT_EQ(e.options.cdl.actBits, 4);
  EXPECT_EQ(e.syntheticSeed, 9u);
  std::string text = describe(d);
  text.replace(text.find("\"hidden\""), 8, "\"hiddn\"");
  EXPECT_THAT(errorOf([&] { parseDescription(text); }), HasSubstr("hidden is missing"));
  EXPECT_THAT(errorOf([&] { parseDescription("[1]"); }), HasSubstr("not a JSON object"));
}

TEST(ModelCodec, ReadingAFileNamesItAndWhatIsWrong) {
  test::TempDir dir;
  EXPECT_THAT(errorOf([&] { readModelFile(dir.path() + "/none.cdlm"); }),
              HasSubstr("none.cdlm: cannot be opened"));
  ModelDescription d = description("mlp", true);
  ModelFile f = quantizeModel(*trainedModel(d), d, {});
  writeModelFile(dir.path() + "/m.cdlm", f);
  EXPECT_EQ(readModelFile(dir.path() + "/m.cdlm").fileBytes, f.fileBytes);
  std::FILE* fp = std::fopen((dir.path() + "/m.cdlm").c_str(), "r+b");
  ASSERT_NE(fp, nullptr);
  ASSERT_EQ(::ftruncate(::fileno(fp), 100), 0);
  std::fclose(fp);
  EXPECT_THAT(errorOf([&] { readModelFile(dir.path() + "/m.cdlm"); }), HasSubstr("m.cdlm: "));
}

}  // namespace
}  // namespace cdl::core
