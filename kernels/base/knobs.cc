#include "kernels/base/knobs.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <regex>

#include "kernels/base/error.h"

namespace cdl {
namespace {

// The raw value of a knob, read from the environment once per process (Note [Knobs]).
std::string rawValue(const Knob& knob) {
  static std::mutex mu;
  static std::map<std::string, std::string> values;
  std::lock_guard<std::mutex> lock(mu);
  auto it = values.find(knob.name);
  if (it == values.end()) {
    const char* v = std::getenv(knob.name);
    it = values.emplace(knob.name, (v && *v) ? std::string(v) : std::string(knob.defaultValue))
             .first;
  }
  return it->second;
}

}  // namespace

namespace {

void checkPattern(const Knob& knob, const std::string& v) {
  CDL_CHECK(knob.pattern != nullptr, knob.name, " is not a free-text knob");
  CDL_CHECK(std::regex_match(v, std::regex(knob.pattern)), knob.name, "='", v,
            "' is not of the form it takes: ", knob.meaning);
}

double parseSeconds(const Knob& knob, const std::string& v) {
  CDL_CHECK(knob.choices == nullptr && knob.pattern == nullptr, knob.name,
            " is not a number of seconds");
  if (v == "none") return 0.0;
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  // Infinity and huge values would overflow a clock's deadline; NaN fails both comparisons.
  CDL_CHECK(!v.empty() && *end == '\0' && s >= 0.0 && s <= kMaxKnobSeconds, knob.name, "='", v,
            "' is not a number of seconds in [0, ", kMaxKnobSeconds, "] or none; ", knob.meaning);
  return s;
}

void checkChoice(const Knob& knob, const std::string& v) {
  CDL_CHECK(knob.choices != nullptr, knob.name, " is a number, not a choice");
  const std::string choices = knob.choices;
  size_t begin = 0;
  while (begin <= choices.size()) {
    const size_t end = std::min(choices.find('|', begin), choices.size());
    if (choices.compare(begin, end - begin, v) == 0 && v.size() == end - begin) return;
    begin = end + 1;
  }
  CDL_THROW(knob.name, "='", v, "' is not one of ", choices, " (", knob.meaning, ")");
}

}  // namespace

double knobSeconds(const Knob& knob) { return parseSeconds(knob, rawValue(knob)); }

std::string knobChoice(const Knob& knob) {
  const std::string v = rawValue(knob);
  checkChoice(knob, v);
  return v;
}

std::string knobText(const Knob& knob) {
  const std::string v = rawValue(knob);
  checkPattern(knob, v);
  return v;
}

void checkKnobValue(const Knob& knob, const std::string& value) {
  if (knob.pattern != nullptr) {
    checkPattern(knob, value);
  } else if (knob.choices != nullptr) {
    checkChoice(knob, value);
  } else {
    parseSeconds(knob, value);
  }
}

const Knob* findKnob(const std::string& name) {
  for (const Knob* k : kAllKnobs) {
    if (name == k->name) return k;
  }
  return nullptr;
}

std::vector<std::string> undeclaredKnobs(const std::vector<std::string>& environment) {
  std::vector<std::string> out;
  for (const std::string& entry : environment) {
    const std::string name = entry.substr(0, entry.find('='));
    if (name.rfind("CDL_", 0) == 0 && findKnob(name) == nullptr) out.push_back(name);
  }
  return out;
}

}  // namespace cdl
