#include "comm/reduce/scheme.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "comm/reduce/scheme_type.h"
#include "kernels/base/error.h"
#include "tests/support/error_of.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

std::string specError(const std::string& spec) {
  return test::errorOf([&] { parseSchemeSpec(spec); });
}

// Every scheme type (Note [Scheme registry]) is found by its id; its families' candidates are its
// own specs, of that family, that format and parse back; its instances reduce with their spec.
TEST(SchemeRegistry, EveryTypeServesItsFamiliesAndMakesItsSchemes) {
  ASSERT_FALSE(schemeTypes().empty());
  for (const SchemeType* t : schemeTypes()) {
    EXPECT_EQ(&schemeType(t->id()), t);
    ASSERT_FALSE(t->families().empty());
    for (const std::string& f : t->families()) {
      const std::vector<SchemeSpec> grid = t->candidates(f, SchemeSpec{});
      ASSERT_FALSE(grid.empty()) << f;
      for (const SchemeSpec& c : grid) {
        EXPECT_EQ(c.scheme, t->id()) << f;
        EXPECT_EQ(t->family(c), f);
        EXPECT_EQ(formatSchemeSpec(parseSchemeSpec(formatSchemeSpec(c))), formatSchemeSpec(c));
      }
      const auto scheme = t->make(grid.front(), {{"w", 0, 0, 64, 32}}, SchemeOptions{});
      EXPECT_EQ(formatSchemeSpec(scheme->spec()), formatSchemeSpec(grid.front()));
      // A 64 x 32 gradient: each candidate that applies is measured with a finite error and a
      // positive size.
      std::vector<float> g(64 * 32);
      for (size_t i = 0; i < g.size(); ++i) g[i] = std::sin(0.37f * float(i));
      for (const SchemeSpec& c : grid) {
        if (!t->applies(c, 64, 32)) continue;
        const CandidateCost cost = t->measure(g.data(), 64, 32, c, 4);
        EXPECT_TRUE(cost.valid && std::isfinite(cost.error) && cost.bytes > 0)
            << formatSchemeSpec(c);
      }
    }
  }
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
