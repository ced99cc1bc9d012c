#include "bench/cost_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "kernels/base/error.h"

namespace cdl::bench {
namespace {

using ::testing::HasSubstr;

constexpr double kAlpha = 40e-6, kBandwidth = 1.25e8;  // 40 us, 1 Gbit/s
constexpr int kRanks = 4;

// Rows that the model of Note [Cost model] gives exactly for the scheme `s` on 4 ranks.
std::vector<MeasuredRow> exactRows(const SchemeCost& s) {
  std::vector<MeasuredRow> rows;
  for (double bytes : {1 << 20, 4 << 20, 16 << 20, 64 << 20}) {
    MeasuredRow r;
    r.codec = s.codec;
    r.bytes = bytes;
    r.ranks = kRanks;
    r.seconds = modelSeconds(s, bytes, kRanks, kAlpha, kBandwidth);
    SchemeCost wireOnly = s;
    wireOnly.encodePerByte = wireOnly.decodePerByte = 0;
    r.wireBytes = (modelSeconds(wireOnly, bytes, kRanks, 0.0, 1.0));  // wire bytes at B = 1
    SchemeCost encOnly = s;
    encOnly.wirePerByte = encOnly.decodePerByte = 0;
    r.encodeSeconds = modelSeconds(encOnly, bytes, kRanks, 0.0, 1.0);
    SchemeCost decOnly = s;
    decOnly.wirePerByte = decOnly.encodePerByte = 0;
    r.decodeSeconds = modelSeconds(decOnly, bytes, kRanks, 0.0, 1.0);
    rows.push_back(r);
  }
  return rows;
}

TEST(CostModel, SchemesAreKindedByHowTheyMoveBytes) {
  EXPECT_EQ(costKind("mpi_allreduce_fp32"), CostKind::kRing);
  EXPECT_EQ(costKind("none"), CostKind::kRing);
  EXPECT_EQ(costKind("qsgd:bits=4,entropy=rans"), CostKind::kSummable);
  EXPECT_EQ(costKind("fp16"), CostKind::kSummable);
  EXPECT_EQ(costKind("topk:density=0.01"), CostKind::kGather);
  EXPECT_EQ(costKind("powersgd:rank=4"), CostKind::kPowerSgd);
  EXPECT_THROW(costKind("zip"), Error);
}

// The ring's time is its 2(W-1) messages and 2(W-1)/W of the bytes; a quantizer's adds its
// codec terms; top-k's wire grows with W.
TEST(CostModel, TheModelHasTheTermsOfEachAlgorithm) {
  const SchemeCost ring{"mpi_allreduce_fp32", CostKind::kRing, 1.0, 0.0, 0.0};
  EXPECT_DOUBLE_EQ(modelSeconds(ring, 1e6, 4, 1e-5, 1e8), 6 * 1e-5 + 1.5 * 1e6 / 1e8);
  const SchemeCost q{"qsgd:bits=4", CostKind::kSummable, 0.125, 1e-9, 2e-9};
  EXPECT_DOUBLE_EQ(modelSeconds(q, 1e6, 4, 1e-5, 1e8),
                   6 * 1e-5 + 0.125 * 1.5 * 1e6 / 1e8 + 1e-9 * 1.25e6 + 2e-9 * 1.75e6);
  const SchemeCost topk{"topk:density=0.01", CostKind::kGather, 0.02, 0.0, 0.0};
  EXPECT_DOUBLE_EQ(modelSeconds(topk, 1e6, 101, 0.0, 1e8), 0.02 * 100 * 1e6 / 1e8);
  const SchemeCost psgd{"powersgd:rank=4", CostKind::kPowerSgd, 0.01, 0.0, 0.0};
  EXPECT_DOUBLE_EQ(modelSeconds(psgd, 1e6, 4, 1e-5, 1e8), 12 * 1e-5 + 0.01 * 1.5 * 1e6 / 1e8);
}

TEST(CostModel, AFitOfExactRowsFindsTheLinkAndEverySchemesTerms) {
  std::vector<MeasuredRow> rows = exactRows({"mpi_allreduce_fp32", CostKind::kRing, 1.0, 0, 0});
  const SchemeCost q{"qsgd:bits=4,entropy=rans", CostKind::kSummable, 0.13, 1.5e-9, 2.5e-9};
  const SchemeCost topk{"topk:density=0.01", CostKind::kGather, 0.025, 0.5e-9, 0.7e-9};
  for (const SchemeCost& s : {q, topk}) {
    for (const MeasuredRow& r : exactRows(s)) rows.push_back(r);
  }
  const CostFit fit = fitCost(rows);
  EXPECT_NEAR(fit.alpha, kAlpha, kAlpha * 1e-6);
  EXPECT_NEAR(fit.bandwidth, kBandwidth, kBandwidth * 1e-6);
  ASSERT_EQ(fit.schemes.size(), 3u);
  for (size_t i = 1; i < 3; ++i) {
    const SchemeCost& want = i == 1 ? q : topk;
    const SchemeCost& got = fit.schemes[i];
    EXPECT_EQ(got.codec, want.codec);
    EXPECT_EQ(got.kind, want.kind);
    EXPECT_NEAR(got.wirePerByte, want.wirePerByte, 1e-9);
    EXPECT_NEAR(got.encodePerByte, want.encodePerByte, 1e-15);
    EXPECT_NEAR(got.decodePerByte, want.decodePerByte, 1e-15);
  }
  for (const MeasuredRow& r : rows) {  // the fit reproduces every row it was fitted on
    const SchemeCost& s = r.codec == q.codec      ? fit.schemes[1]
                          : r.codec == topk.codec ? fit.schemes[2]
                                                  : fit.schemes[0];
    EXPECT_NEAR(modelSeconds(s, r.bytes, r.ranks, fit.alpha, fit.bandwidth), r.seconds,
                r.seconds * 1e-6);
  }
}

TEST(CostModel, ASingleSizeFitsTheBandwidthAlone) {
  std::vector<MeasuredRow> rows = exactRows({"mpi_allreduce_fp32", CostKind::kRing, 1.0, 0, 0});
  rows.resize(1);
  rows[0].seconds = 1.5 * rows[0].bytes / kBandwidth;  // no latency at all
  const CostFit fit = fitCost(rows);
  EXPECT_EQ(fit.alpha, 0.0);
  EXPECT_NEAR(fit.bandwidth, kBandwidth, kBandwidth * 1e-9);
}

TEST(CostModel, RecordsItCannotFitAreNamed) {
  const auto refused = [](const nlohmann::json& doc, const std::string& text) {
    try {
      fitCost(measuredRows(doc));
      ADD_FAILURE() << "accepted " << doc.dump();
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(text)) << doc.dump();
    }
  };
  const nlohmann::json mpi = {{"codec", "mpi_allreduce_fp32"},
                              {"bytes", 1024},
                              {"ranks", 4},
                              {"time_us", 100.0},
                              {"wire_bytes", 1536}};
  refused(nlohmann::json::object(), "not a list");
  refused(nlohmann::json::array({{{"codec", "none"}, {"ranks", 4}}}), "record 0: no 'bytes'");
  nlohmann::json negative = mpi;
  negative["time_us"] = -1.0;
  refused(nlohmann::json::array({mpi, negative}), "record 1: 'time_us' is -1");
  nlohmann::json eight = mpi;
  eight["ranks"] = 8;
  refused(nlohmann::json::array({mpi, eight}), "fit one rank count at a time");
  nlohmann::json q = mpi;
  q["codec"] = "qsgd:bits=4";
  refused(nlohmann::json::array({q}), "no mpi_allreduce_fp32 records");
}

TEST(BenchUtil, LinkRatesReadAsTcWritesThem) {
  EXPECT_DOUBLE_EQ(parseRate("1gbit"), 1.25e8);
  EXPECT_DOUBLE_EQ(parseRate("100mbit"), 1.25e7);
  EXPECT_DOUBLE_EQ(parseRate("2.5Gbit"), 3.125e8);
  EXPECT_DOUBLE_EQ(parseRate("12mbps"), 1.2e7);
  EXPECT_DOUBLE_EQ(parseRate("8000"), 1000.0);
  for (const char* bad : {"", "fast", "1 gbit", "-1gbit", "0mbit", "1gbits", "1e400gbit"}) {
    EXPECT_THROW(parseRate(bad), Error) << bad;
  }
}

TEST(BenchUtil, CsvFieldsQuoteOnlyWhatNeedsIt) {
  EXPECT_EQ(csvField("none"), "none");
  EXPECT_EQ(csvField("qsgd:bits=4,entropy=rans"), "\"qsgd:bits=4,entropy=rans\"");
  EXPECT_EQ(csvField("a\"b"), "\"a\"\"b\"");
}

}  // namespace
}  // namespace cdl::bench
