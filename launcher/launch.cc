#include "launcher/launch.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "kernels/base/error.h"
#include "kernels/base/knobs.h"

extern char** environ;

namespace cdl::launcher {

std::string shellQuote(const std::string& word) {
  if (!word.empty() &&
      word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                             "@%_+=:,./-") == std::string::npos) {
    return word;
  }
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string joinCommand(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : " ") + shellQuote(w);
  return out;
}

std::vector<std::string> programCommand(const LaunchOptions& opt) {
  std::vector<std::string> cmd = {opt.program};
  if (!opt.bench) {
    CDL_CHECK(!opt.config.empty(), "cdl-launch: a config is needed to train (or --bench)");
    cmd.push_back(opt.config);
  }
  cmd.insert(cmd.end(), opt.args.begin(), opt.args.end());
  return cmd;
}

std::vector<std::string> emulateCommand(const LaunchOptions& opt, const std::string& tool,
                                        const std::vector<std::string>& mpirun) {
  CDL_CHECK(opt.emulate >= 1, "cdl-launch: --emulate ", opt.emulate, ", must be >= 1");
  CDL_CHECK(opt.np % opt.emulate == 0, "cdl-launch: -np ", opt.np,
            " is not a multiple of --emulate ", opt.emulate, " (ranks per emulated node)");
  const std::string slots = std::to_string(opt.np / opt.emulate);
  std::vector<std::string> cmd = {tool, "--nodes", std::to_string(opt.emulate), "--slots", slots};
  cmd.insert(cmd.end(), {"--bandwidth", opt.bandwidth});
  if (!opt.latency.empty()) cmd.insert(cmd.end(), {"--latency", opt.latency});
  cmd.push_back("--");
  cmd.insert(cmd.end(), mpirun.begin(), mpirun.end());
  return cmd;
}

namespace {

bool validEnvName(const std::string& entry) {
  static const std::regex name("[A-Za-z_][A-Za-z0-9_]*(=.*)?");
  return std::regex_match(entry, name);
}

// A -x entry for the ranks: throws cdl::Error naming it unless it is NAME or NAME=VALUE.
void checkEnvEntry(const std::string& entry) {
  CDL_CHECK(validEnvName(entry), "cdl-launch: -x '", entry, "' is not NAME or NAME=VALUE");
}

}  // namespace

std::vector<std::string> mpirunCommand(const LaunchOptions& opt,
                                       const std::vector<std::string>& cdlEnv) {
  CDL_CHECK(opt.np >= 1, "cdl-launch: -np ", opt.np, ", must be >= 1");
  CDL_CHECK(opt.hosts.empty() || opt.hostfile.empty(),
            "cdl-launch: give -H or --hostfile, not both");
  CDL_CHECK(opt.emulate == 0 || (opt.hosts.empty() && opt.hostfile.empty()),
            "cdl-launch: --emulate makes its own hosts; leave out -H and --hostfile");
  std::vector<std::string> cmd = {"mpirun", "-np", std::to_string(opt.np)};
  if (!opt.hosts.empty()) {
    // Host names as RFC 1123 has them (a letter or digit first, so none reads as an option).
    static const std::regex hostList(
        "[A-Za-z0-9][A-Za-z0-9_.-]*(:[0-9]+)?(,[A-Za-z0-9][A-Za-z0-9_.-]*(:[0-9]+)?)*");
    CDL_CHECK(std::regex_match(opt.hosts, hostList), "cdl-launch: -H '", opt.hosts,
              "' is not a list of host[:slots] separated by commas (host names start with a "
              "letter or digit)");
    cmd.insert(cmd.end(), {"-H", opt.hosts});
  } else if (!opt.hostfile.empty()) {
    std::ifstream in(opt.hostfile);
    CDL_CHECK(in.good(), "cdl-launch: --hostfile ", opt.hostfile, " cannot be read");
    static const std::regex hostLine(
        "\\s*([A-Za-z0-9][A-Za-z0-9_.-]*(\\s+(slots|max_slots|max-slots)=[0-9]+)*)?\\s*(#.*)?");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      CDL_CHECK(std::regex_match(line, hostLine), "cdl-launch: --hostfile ", opt.hostfile, ":", n,
                ": '", line, "' is not 'host [slots=N]' (host names start with a letter or digit)");
    }
    cmd.insert(cmd.end(), {"--hostfile", opt.hostfile});
  } else if (opt.emulate == 0 && !opt.inAllocation) {
    cmd.push_back("--oversubscribe");  // one host: more ranks than cores is the user's choice
  }
  cmd.insert(cmd.end(), {"--bind-to", "none"});
  if (opt.runAsRoot) cmd.push_back("--allow-run-as-root");
  for (const std::string& e : cdlEnv) cmd.insert(cmd.end(), {"-x", e});
  for (const std::string& e : opt.env) {
    checkEnvEntry(e);
    cmd.insert(cmd.end(), {"-x", e});
  }
  cmd.insert(cmd.end(), opt.mpiArgs.begin(), opt.mpiArgs.end());
  const std::vector<std::string> prog = programCommand(opt);
  cmd.insert(cmd.end(), prog.begin(), prog.end());
  return cmd;
}

std::vector<std::string> launchCommand(const LaunchOptions& opt,
                                       const std::vector<std::string>& cdlEnv) {
  const bool srun = opt.inAllocation && opt.srunPmix && opt.emulate == 0 && opt.hosts.empty() &&
                    opt.hostfile.empty() && opt.mpiArgs.empty();
  if (!srun) return mpirunCommand(opt, cdlEnv);
  CDL_CHECK(opt.np >= 1, "cdl-launch: -np ", opt.np, ", must be >= 1");
  std::vector<std::string> cmd;
  for (const std::string& e : opt.env) {
    checkEnvEntry(e);
    if (e.find('=') != std::string::npos) cmd.push_back(e);
  }
  if (!cmd.empty()) cmd.insert(cmd.begin(), "env");
  // One failed task ends the step (as mpirun does), with every other task of it.
  cmd.insert(cmd.end(), {"srun", "--mpi=pmix", "--ntasks", std::to_string(opt.np),
                         "--kill-on-bad-exit=1", "--cpu-bind=none"});
  const std::vector<std::string> prog = programCommand(opt);
  cmd.insert(cmd.end(), prog.begin(), prog.end());
  return cmd;
}

namespace {

// The part of an sbatch script that runs the ranks (Note [SLURM stops]): their step in the
// background, the stop signal passed on to it, the requeue of a stopped job; the script's status
// is the step's.
std::string jobBody(const LaunchOptions& opt) {
  std::ostringstream s;
  const std::string prog = joinCommand(programCommand(opt)) + " \"${restart[@]}\"";
  s << "restart=()\n";
  if (opt.requeue) {
    s << "if [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ]; then\n"
      << "  echo \"cdl-launch: job $SLURM_JOB_ID requeued ($SLURM_RESTART_COUNT): continuing from "
         "the newest step every rank holds\"\n"
      << "  restart=(--restart)\n"
      << "fi\n";
  }
  s << "if srun --mpi=list 2>&1 | grep -q pmix; then\n"
    << "  srun --mpi=pmix " << prog << " &\n"
    << "else\n"
    << "  mpirun --bind-to none " << (opt.runAsRoot ? "--allow-run-as-root " : "")
    << joinCommand(opt.mpiArgs) << (opt.mpiArgs.empty() ? "" : " ") << prog << " &\n"
    << "fi\n"
    << "step=$!\n"
    << "# SLURM's signal ahead of the time limit reaches this shell: the ranks stop with a "
       "checkpoint.\n"
    << "trap 'kill -USR1 \"$step\" 2>/dev/null || true' USR1\n"
    << "while :; do\n"
    << "  status=0\n"
    << "  wait \"$step\" || status=$?\n"
    << "  kill -0 \"$step\" 2>/dev/null || break\n"
    << "done\n";
  if (opt.requeue) {
    s << "if [ \"$status\" -eq 3 ]; then\n"
      << "  echo \"cdl-launch: the ranks stopped with a checkpoint; requeueing job "
         "$SLURM_JOB_ID\"\n"
      << "  scontrol requeue \"$SLURM_JOB_ID\"\n"
      << "fi\n";
  }
  s << "exit \"$status\"\n";
  return s.str();
}

}  // namespace

std::string sbatchScript(const LaunchOptions& opt, const std::vector<std::string>& cdlEnv) {
  CDL_CHECK(opt.nodes >= 1, "cdl-launch: --nodes ", opt.nodes, ", must be >= 1");
  const int perNode =
      opt.tasksPerNode > 0 ? opt.tasksPerNode : (opt.np + opt.nodes - 1) / opt.nodes;
  static const std::regex time("([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}");
  CDL_CHECK(std::regex_match(opt.time, time), "cdl-launch: --time (slurm.time) '", opt.time,
            "' is not a SLURM time such as 30, 01:00:00 or 1-00:00:00");
  // #SBATCH lines are not read by a shell, so their values cannot be quoted: refuse what would
  // break them instead. The message names the flag and the config key it may come from.
  auto directive = [](const std::string& flag, const std::string& value) {
    std::string key = "slurm." + flag.substr(2);
    std::replace(key.begin(), key.end(), '-', '_');
    CDL_CHECK(value.find_first_of("\n\r\t \"'$`\\") == std::string::npos, "cdl-launch: ", flag,
              " (", key, ") '", value,
              "' holds a space, quote or other character sbatch cannot take");
    return "#SBATCH " + flag + (value.empty() ? "" : "=" + value) + "\n";
  };
  // The job name also names the script file: it must stay in its folder.
  static const std::regex jobName("[A-Za-z0-9][A-Za-z0-9_.-]*");
  CDL_CHECK(std::regex_match(opt.jobName, jobName), "cdl-launch: --job-name (slurm.job_name) '",
            opt.jobName,
            "' must be letters, digits, '_', '.' and '-', starting with a letter or digit");
  std::ostringstream s;
  s << "#!/bin/bash\n";
  s << directive("--job-name", opt.jobName);
  s << directive("--nodes", std::to_string(opt.nodes));
  s << directive("--ntasks-per-node", std::to_string(perNode));
  s << directive("--time", opt.time);
  if (!opt.partition.empty()) s << directive("--partition", opt.partition);
  if (!opt.account.empty()) s << directive("--account", opt.account);
  if (!opt.output.empty()) s << directive("--output", opt.output);
  CDL_CHECK(opt.signalBefore >= 0, "cdl-launch: --signal-before ", opt.signalBefore,
            " must be >= 0 seconds");
  CDL_CHECK(!opt.requeue || !opt.bench,
            "cdl-launch: --requeue requeues cdl-train jobs, not --bench");
  if (opt.signalBefore > 0)
    s << directive("--signal", "B:USR1@" + std::to_string(opt.signalBefore));
  if (opt.requeue) s << directive("--requeue", "") << directive("--open-mode", "append");
  s << "set -euo pipefail\n";
  if (!opt.workDir.empty()) s << "cd " << shellQuote(opt.workDir) << "\n";
  for (const std::string& e : cdlEnv) {
    const size_t eq = e.find('=');
    s << "export " << e.substr(0, eq) << "=" << shellQuote(e.substr(eq + 1)) << "\n";
  }
  for (const std::string& e : opt.env) {
    checkEnvEntry(e);
    const size_t eq = e.find('=');
    if (eq != std::string::npos) {
      s << "export " << e.substr(0, eq) << "=" << shellQuote(e.substr(eq + 1)) << "\n";
    } else {
      s << "export " << e << "\n";
    }
  }
  s << jobBody(opt);
  return s.str();
}

namespace {

// The NAME=VALUE entries of this process's environment whose name starts with CDL_.
std::vector<std::string> cdlEntries() {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry = *e;
    if (entry.rfind("CDL_", 0) == 0 && entry.find('=') != std::string::npos &&
        validEnvName(entry)) {
      out.push_back(entry);
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> cdlEnvironment() {
  std::vector<std::string> out;
  for (const std::string& entry : cdlEntries()) {
    const size_t eq = entry.find('=');
    const Knob* knob = findKnob(entry.substr(0, eq));
    if (knob == nullptr) continue;
    const std::string value = entry.substr(eq + 1);
    if (!value.empty()) checkKnobValue(*knob, value);  // empty: the rank takes the default
    out.push_back(entry);
  }
  return out;
}

std::vector<std::string> undeclaredCdlVariables() { return undeclaredKnobs(cdlEntries()); }

int failedRankOf(const std::string& line) {
  static const std::regex error("cdl-(train|bench): \\[rank ([0-9]+)\\]");
  std::smatch m;
  if (!std::regex_search(line, m, error)) return -1;
  return std::stoi(m[2].str());
}

int killedRankOf(const std::string& line) {
  static const std::regex killed(
      "process rank ([0-9]+) with PID [0-9]+ on node \\S+ exited on signal");
  std::smatch m;
  if (!std::regex_search(line, m, killed)) return -1;
  return std::stoi(m[1].str());
}

int64_t resumedStepOf(const std::string& line) {
  static const std::regex resumed("\\[rank 0\\] \\[info\\] resumed from .* \\(step ([0-9]+),");
  std::smatch m;
  if (!std::regex_search(line, m, resumed)) return -1;
  return std::stoll(m[1].str());
}

double restartDelaySeconds(int restart) {
  return std::min(30.0, 2.0 * static_cast<double>(int64_t{1} << std::min(restart, 4)));
}

}  // namespace cdl::launcher
