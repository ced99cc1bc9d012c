#pragma once

#include <cstdint>
#include <string>

namespace cdl::comm {

// Note [Environment knobs]
// Every CDL_* environment variable cdl reads is declared here, with its default and meaning;
// config files hold everything else. Reading one that is set to a malformed value throws
// cdl::Error naming the variable.
struct EnvKnob {
  const char* name;
  const char* defaultValue;
  const char* meaning;
};

inline constexpr EnvKnob kEnvCommTimeout = {
    "CDL_COMM_TIMEOUT", "300",
    "seconds a collective may take before it fails with an error naming it (0 = wait forever)"};
inline constexpr EnvKnob kEnvLogLevel = {"CDL_LOG_LEVEL", "info",
                                         "spdlog level: trace, debug, info, warn, error, off"};

inline constexpr const EnvKnob* kAllEnvKnobs[] = {&kEnvCommTimeout, &kEnvLogLevel};

// The variable's value, or its default when unset or empty.
std::string envString(const EnvKnob& knob);
// The value as a non-negative number; throws cdl::Error naming the variable when malformed.
double envSeconds(const EnvKnob& knob);

}  // namespace cdl::comm
