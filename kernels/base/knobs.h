#pragma once

#include <string>
#include <vector>

namespace cdl {

// Note [Knobs]
// Every CDL_* environment variable cdl reads is declared here, once, with its default and meaning;
// config files hold everything else. A knob is read from the environment the first time it is
// asked for and that value holds for the rest of the process. A malformed value is an error that
// names the variable, the value and what it takes, never a silent fallback. cdl-launch forwards
// the declared knobs set in its environment to every rank and warns about CDL_* names that are
// not declared (most likely typos).
struct Knob {
  const char* name;
  const char* defaultValue;
  const char* meaning;
  // The values the knob takes, separated by '|', or nullptr for a number of seconds: 0 to
  // kMaxKnobSeconds, or "none" (no limit, read as 0).
  const char* choices;
  // Set instead for a knob of free text: the regular expression (ECMAScript) its whole value
  // must match.
  const char* pattern = nullptr;
};

inline constexpr Knob kKnobCommTimeout = {
    "CDL_COMM_TIMEOUT", "300",
    "seconds a collective may take before it fails with an error naming it (at most 1e7; 0 or "
    "none = wait forever)",
    nullptr};

// The longest number of seconds a knob takes (about 116 days): deadlines a clock can hold.
inline constexpr double kMaxKnobSeconds = 1e7;
inline constexpr Knob kKnobLogLevel = {"CDL_LOG_LEVEL", "info", "log level of every rank",
                                       "trace|debug|info|warn|error|critical|off"};

// Fault injection for the fault tests (Note [Fault points], core/run/files.h): POINT:RANK:STEP
// kills rank RANK with SIGKILL at fault point POINT of step STEP; term-POINT sends it SIGTERM
// there instead, stop-POINT SIGSTOP, hang-POINT makes it sleep for ever and reset-POINT resets its
// TCP ring links; several faults are separated by commas.
inline constexpr Knob kKnobFault = {
    "CDL_FAULT", "",
    "POINT:RANK:STEP[,...] kills that rank at that point of that step (points: backward, "
    "checkpoint-write, after-rename; term-POINT sends SIGTERM instead, stop-POINT SIGSTOP, "
    "hang-POINT hangs the rank, reset-POINT resets its TCP ring links); for fault tests",
    nullptr,
    "(|((term|stop|hang|reset)-)?(backward|checkpoint-write|after-rename):[0-9]{1,6}:"
    "[0-9]{1,12}(,((term|stop|hang|reset)-)?(backward|checkpoint-write|after-rename):[0-9]{1,6}:"
    "[0-9]{1,12})"
    "{0,7})"};
// Note [TCP ring messages] (comm/transport/tcp/tcp_channel.h).
inline constexpr Knob kKnobTcpRing = {
    "CDL_TCP_RING", "on",
    "on: an MPI communicator's messages to its ring neighbours (the fp32 ring allreduce, pipeline "
    "stages) go over direct TCP connections; off: over MPI",
    "on|off"};
// Note [Allreduce choice] (comm/transport/ring_allreduce.h).
inline constexpr Knob kKnobAllreduce = {
    "CDL_ALLREDUCE", "auto",
    "the fp32 allreduce of an MPI communicator of three ranks or more: auto measures Open MPI's "
    "and the ring and takes the faster per size; ring: the ring at every size; mpi: Open MPI's",
    "auto|ring|mpi"};
inline constexpr const Knob* kAllKnobs[] = {&kKnobCommTimeout, &kKnobLogLevel, &kKnobFault,
                                            &kKnobTcpRing, &kKnobAllreduce};

// The knob's value as a number of seconds (0 for "none"); its default when unset or empty.
// Throws cdl::Error naming the variable when the value is not such a number (negative, above
// kMaxKnobSeconds, not finite) or the knob takes choices.
double knobSeconds(const Knob& knob);
// The knob's value, one of its choices; its default when unset or empty. Throws cdl::Error naming
// the variable and the choices when the value is not one of them.
std::string knobChoice(const Knob& knob);

// The value of a free-text knob (one with a pattern); its default when unset or empty. Throws
// cdl::Error naming the variable when the value does not match the pattern.
std::string knobText(const Knob& knob);

// Throws cdl::Error naming the variable unless value is valid for the knob (what knobSeconds or
// knobChoice would accept).
void checkKnobValue(const Knob& knob, const std::string& value);

// The declared knob of that name, or nullptr.
const Knob* findKnob(const std::string& name);
// Of NAME=VALUE entries (an environment), the names that start with CDL_ but are not declared.
std::vector<std::string> undeclaredKnobs(const std::vector<std::string>& environment);

}  // namespace cdl
