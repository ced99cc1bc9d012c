#include "kernels/base/knobs.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <set>
#include <string>

#include "kernels/base/error.h"
#include "tests/support/error_of.h"

namespace cdl {
namespace {

std::string knobError(const Knob& knob, const std::string& value) {
  return test::errorOf([&] { checkKnobValue(knob, value); });
}

TEST(Knobs, EveryKnobIsDeclaredOnceWithAMeaningAndADefaultItAccepts) {
  std::set<std::string> names;
  for (const Knob* k : kAllKnobs) {
    EXPECT_EQ(std::string(k->name).rfind("CDL_", 0), 0u) << k->name;
    EXPECT_TRUE(names.insert(k->name).second) << k->name << " is declared twice";
    EXPECT_GT(std::string(k->meaning).size(), 10u) << k->name;
    EXPECT_NO_THROW(checkKnobValue(*k, k->defaultValue)) << k->name;
    EXPECT_EQ(findKnob(k->name), k);
  }
  EXPECT_EQ(findKnob("CDL_NO_SUCH_KNOB"), nullptr);
}

TEST(Knobs, ATypoInTheLogLevelIsAnErrorNamingTheVariableAndTheChoices) {
  const std::string e = knobError(kKnobLogLevel, "inf");
  EXPECT_NE(e.find("CDL_LOG_LEVEL='inf'"), std::string::npos) << e;
  EXPECT_NE(e.find("debug"), std::string::npos) << e;
  EXPECT_NE(knobError(kKnobLogLevel, "infoo"), "no error");
  EXPECT_NE(knobError(kKnobLogLevel, "in"), "no error");
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_EQ(knobError(kKnobLogLevel, level), "no error") << level;
  }
}

TEST(Knobs, MalformedSecondsAreAnErrorNamingTheVariable) {
  // Values whose deadline no clock holds (1e12 s made every collective time out at once) and
  // non-numbers are refused; "none" is the explicit no-limit.
  for (const char* bad : {"abc", "-1", "5s", "1e", "1e12", "inf", "nan", "10000001", "None"}) {
    const std::string e = knobError(kKnobCommTimeout, bad);
    EXPECT_NE(e.find("CDL_COMM_TIMEOUT"), std::string::npos) << bad << ": " << e;
  }
  for (const char* good : {"0", "2.5", "1e7", "none"}) {
    EXPECT_EQ(knobError(kKnobCommTimeout, good), "no error") << good;
  }
}

TEST(Knobs, AFreeTextKnobTakesOnlyValuesOfItsForm) {
  for (const char* good :
       {"", "backward:1:10", "checkpoint-write:0:32", "after-rename:3:1", "stop-backward:2:5",
        "hang-backward:0:3,term-after-rename:1:4", "reset-backward:1:6"}) {
    EXPECT_EQ(knobError(kKnobFault, good), "no error") << good;
  }
  for (const char* bad : {"backward", "backward:1", "explode:1:2", "backward:-1:2", "backward:1:x",
                          "halt-backward:1:2", "stop-:1:2"}) {
    const std::string e = knobError(kKnobFault, bad);
    EXPECT_NE(e.find("CDL_FAULT='"), std::string::npos) << bad << ": " << e;
  }
}

TEST(Knobs, AValueIsReadOnceAndHoldsForTheProcess) {
  ::setenv("CDL_COMM_TIMEOUT", "7", 1);
  EXPECT_EQ(knobSeconds(kKnobCommTimeout), 7.0);
  ::setenv("CDL_COMM_TIMEOUT", "9", 1);
  EXPECT_EQ(knobSeconds(kKnobCommTimeout), 7.0);
  ::unsetenv("CDL_COMM_TIMEOUT");
}

TEST(Knobs, AMalformedValueInTheEnvironmentFailsWhereItIsRead) {
  ::setenv("CDL_LOG_LEVEL", "loud", 1);
  EXPECT_THROW(knobChoice(kKnobLogLevel), Error);
  ::unsetenv("CDL_LOG_LEVEL");
}

TEST(Knobs, UndeclaredCdlNamesAreReportedAndOthersIgnored) {
  const auto names = undeclaredKnobs(
      {"CDL_COMM_TIMEOUT=3", "CDL_LOG_LEVL=debug", "PATH=/bin", "CDL_FOO", "XCDL_BAR=1"});
  EXPECT_EQ(names, (std::vector<std::string>{"CDL_LOG_LEVL", "CDL_FOO"}));
}

}  // namespace
}  // namespace cdl
