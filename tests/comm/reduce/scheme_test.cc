#include "comm/reduce/scheme.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

std::string specError(const std::string& spec) {
  try {
    parseSchemeSpec(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(SchemeSpec, PowerSgdIsASchemeWithARankAndCodecSpecsArePayloadSchemes) {
  const SchemeSpec p = parseSchemeSpec("powersgd:rank=8");
  EXPECT_EQ(p.scheme, SchemeId::kPowerSgd);
  EXPECT_EQ(p.rank, 8);
  EXPECT_EQ(formatSchemeSpec(p), "powersgd:rank=8");
  EXPECT_EQ(parseSchemeSpec("powersgd").rank, 4);
  const SchemeSpec q = parseSchemeSpec("qsgd:bits=3,bucket=256,rounding=nearest,entropy=none");
  EXPECT_EQ(q.scheme, SchemeId::kPayload);
  EXPECT_EQ(q.codec.codec, CodecId::kQsgd);
  EXPECT_EQ(q.codec.rate.bits, 3);
  EXPECT_EQ(formatSchemeSpec(q), "qsgd:bits=3,bucket=256,rounding=nearest,entropy=none");
  EXPECT_EQ(formatSchemeSpec(parseSchemeSpec("none")), "none");
}

TEST(SchemeSpec, BadSpecsNameTheProblem) {
  EXPECT_NE(specError("powersgd:rank=0").find("rank must be 1..1024"), std::string::npos);
  EXPECT_NE(specError("powersgd:rank=two").find("not an integer"), std::string::npos);
  EXPECT_NE(specError("powersgd:bits=2").find("unknown key 'bits'"), std::string::npos);
  EXPECT_NE(specError("qsgd:rank=2").find("unknown key 'rank'"), std::string::npos);
  EXPECT_NE(specError("zip").find("unknown codec 'zip'"), std::string::npos);
}

TEST(Schemes, PayloadStateRoundTripsAndRejectsForeignFields) {
  SchemeOptions o;
  const SchemeSpec spec = parseSchemeSpec("qsgd:bits=2,rounding=nearest");
  auto scheme = makeScheme(spec, {{"w", 0, 0, 2, 3}, {"b", 1, 6, 4, 1}}, o);
  test::spawnRanks(1, [&](int, Communicator& c) {
    std::vector<float> g = {0.1f, -0.7f, 0.3f, 0.9f, -0.2f, 0.05f, 1, 2, 3, 4};
    AllreduceStats st;
    scheme->reduce(c, g.data(), 0, 0, &st);
  });
  SchemeState s;
  scheme->saveState(&s);
  ASSERT_EQ(s.at("w").at("residual").size(), 6u);
  ASSERT_EQ(s.at("b").at("residual").size(), 4u);
  EXPECT_NO_THROW(scheme->checkState(s));
  auto bad = s;
  bad["w"]["q"] = {};
  EXPECT_THROW(scheme->checkState(bad), Error);
  bad = s;
  bad["b"]["residual"][2] = NAN;
  EXPECT_THROW(scheme->checkState(bad), Error);
  auto fresh = makeScheme(spec, {{"w", 0, 0, 2, 3}, {"b", 1, 6, 4, 1}}, o);
  fresh->loadState(s);
  SchemeState again;
  fresh->saveState(&again);
  EXPECT_EQ(again, s);
}

TEST(Schemes, PowerSgdStateHasAResidualAndAWarmStartPerTensor) {
  SchemeOptions o;
  auto scheme = makeScheme(parseSchemeSpec("powersgd:rank=1"), {{"w", 0, 0, 8, 8}}, o);
  SchemeState s;
  scheme->saveState(&s);
  EXPECT_EQ(s.at("w").at("residual").size(), 64u);  // zeros before the first step
  EXPECT_TRUE(s.at("w").at("q").empty());
  auto missing = s;
  missing["w"].erase("q");
  EXPECT_THROW(scheme->checkState(missing), Error);
}

}  // namespace
}  // namespace cdl::comm
