#include "comm/env.h"

#include <cstdlib>

#include "kernels/error.h"

namespace cdl::comm {

std::string envString(const EnvKnob& knob) {
  const char* v = std::getenv(knob.name);
  return (v && *v) ? std::string(v) : std::string(knob.defaultValue);
}

double envSeconds(const EnvKnob& knob) {
  const std::string v = envString(knob);
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  CDL_CHECK(*end == '\0' && s >= 0.0, knob.name, "='", v, "' is not a number of seconds (>= 0); ",
            knob.meaning);
  return s;
}

}  // namespace cdl::comm
