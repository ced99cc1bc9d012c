// cdl-launch: starts cdl-train (or cdl-bench) on local ranks, across hosts, on an emulated cluster
// (cdl-emulate) or as a SLURM batch job, and reports which rank failed first and why.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/cli/train_args.h"
#include "core/config/config.h"
#include "core/run/stop_signals.h"
#include "kernels/base/checks.h"
#include "kernels/base/clock.h"
#include "kernels/base/error.h"
#include "kernels/base/knobs.h"
#include "launcher/launch.h"

namespace {

pid_t child = -1;

// Ctrl-C or a termination request goes to mpirun, which takes every rank down with it.
void forward(int sig) {
  if (child > 0) ::kill(child, sig);
}

std::string selfDir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// What a job's output said: the rank that failed first and its line (a rank that a signal killed,
// else the first error line), and the step rank 0 resumed from (-1: none of them).
struct JobReport {
  int failedRank = -1;
  std::string firstError;
  bool killed = false;  // failedRank died of a signal (mpirun's line), which outranks errors
  int64_t resumedStep = -1;
};

// Reads one line of the job's output: what it tells the report.
void scanLine(const std::string& text, JobReport* report) {
  const std::string trimmed = text.substr(0, text.find_last_not_of("\r\n") + 1);
  if (!report->killed) {
    if (const int k = cdl::launcher::killedRankOf(text); k >= 0) {
      report->failedRank = k;
      report->firstError = trimmed;
      report->killed = true;
    } else if (const int r = cdl::launcher::failedRankOf(text); r >= 0 && report->failedRank < 0) {
      report->failedRank = r;
      report->firstError = trimmed;
    }
  }
  if (report->resumedStep < 0) report->resumedStep = cdl::launcher::resumedStepOf(text);
}

// The job's standard output or error as it arrives: passed through to ours (`to`) at once, and
// scanned line by line.
struct Stream {
  int fd;
  FILE* to;
  std::string partial;
};

// Reads what is there of s; false at its end.
bool pump(Stream& s, JobReport* report) {
  char buf[65536];
  const ssize_t n = ::read(s.fd, buf, sizeof(buf));
  if (n < 0 && errno == EINTR) return true;
  if (n <= 0) {
    if (!s.partial.empty()) scanLine(s.partial, report);
    return false;
  }
  std::fwrite(buf, 1, static_cast<size_t>(n), s.to);
  std::fflush(s.to);
  s.partial.append(buf, static_cast<size_t>(n));
  for (size_t nl; (nl = s.partial.find('\n')) != std::string::npos;) {
    scanLine(s.partial.substr(0, nl + 1), report);
    s.partial.erase(0, nl + 1);
  }
  return true;
}

// Note [A job that does not end]: after a rank's error line, the job (child) gets
// kAbortGraceSeconds to end, then SIGTERM, then SIGKILL.
struct Ending {
  cdl::Clock::time_point since{};  // when the failure was first seen
  int signals = 0;                 // sent so far
  bool reaped = false;
  int status = 0;

  // True once the job has exited (its status reaped here): processes it left behind may hold
  // its output open, so its end, not the pipes', ends the wait.
  bool watch(const JobReport& report) {
    if (since == cdl::Clock::time_point{}) since = cdl::Clock::now();
    if (::waitpid(child, &status, WNOHANG) == child) return reaped = true;
    const double waited = cdl::secondsSince(since);
    if (signals < 2 && waited >= cdl::launcher::kAbortGraceSeconds * (signals + 1)) {
      const int sig = signals == 0 ? SIGTERM : SIGKILL;
      std::fprintf(stderr,
                   "cdl-launch: the job has not ended %.0f s after rank %d failed (a node may be "
                   "cut off); sending it %s\n",
                   waited, report.failedRank, sig == SIGTERM ? "SIGTERM" : "SIGKILL");
      std::fflush(stderr);
      ::kill(child, sig);
      ++signals;
    }
    return false;
  }
};

// Passes on what the job wrote before it ended, for at most a second: what it left behind may
// keep the pipes open.
void drain(Stream (&streams)[2], bool (&open)[2], JobReport* report) {
  const cdl::Clock::time_point t0 = cdl::Clock::now();
  for (int k = 0; k < 2; ++k) {
    while (open[k] && cdl::secondsSince(t0) < 1.0) {
      pollfd pfd{streams[k].fd, POLLIN, 0};
      if (::poll(&pfd, 1, 100) <= 0) break;
      open[k] = pump(streams[k], report);
    }
  }
}

// Runs argv, passing its output and errors through; returns its exit status (128 + signal when
// killed). Fills *report on the way.
int runJob(const std::vector<std::string>& argv, JobReport* report) {
  int out[2], err[2];
  CDL_SYS_CHECK(::pipe(out), "cdl-launch: cannot start the job");
  CDL_SYS_CHECK(::pipe(err), "cdl-launch: cannot start the job");
  child = CDL_SYS_CHECK(::fork(), "cdl-launch: cannot start the job");
  if (child == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cdl-launch: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  struct sigaction sa = {};
  sa.sa_handler = forward;
  // Restarted reads keep the pipes open until the job has exited: its last words (and mpirun's
  // clean-up) must not die of SIGPIPE because the launcher got a signal first.
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  Stream streams[2] = {{out[0], stdout, {}}, {err[0], stderr, {}}};
  bool open[2] = {true, true};
  Ending ending;
  while (open[0] || open[1]) {
    pollfd fds[2];
    nfds_t count = 0;
    int which[2];
    for (int k = 0; k < 2; ++k) {
      if (!open[k]) continue;
      fds[count] = {streams[k].fd, POLLIN, 0};
      which[count++] = k;
    }
    // Once a rank has failed, the job is watched (Note [A job that does not end]).
    const int ready = ::poll(fds, count, report->failedRank < 0 ? -1 : 200);
    if (ready < 0 && errno != EINTR) break;
    for (nfds_t i = 0; ready > 0 && i < count; ++i) {
      if (fds[i].revents != 0) open[which[i]] = pump(streams[which[i]], report);
    }
    if (report->failedRank >= 0 && ending.watch(*report)) {  // the job itself has ended
      drain(streams, open, report);
      break;
    }
  }
  for (const Stream& s : streams) ::close(s.fd);
  int status = ending.status;
  if (!ending.reaped) {
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
  }
  child = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Whether `srun --mpi=list` names PMIx.
bool srunOffersPmix() {
  FILE* p = ::popen("srun --mpi=list 2>&1", "r");
  if (p == nullptr) return false;
  std::string text;
  char buf[256];
  while (std::fgets(buf, sizeof(buf), p) != nullptr) text += buf;
  return ::pclose(p) == 0 && text.find("pmix") != std::string::npos;
}

// "known: CDL_A, CDL_B" for the warning about undeclared CDL_* variables.
std::string knownKnobs() {
  std::string out = "known:";
  for (const cdl::Knob* k : cdl::kAllKnobs)
    out += std::string(out.size() > 6 ? ", " : " ") + k->name;
  return out;
}

// The command line: cdl-launch's own options, and after "--" the program's.
struct Args {
  cdl::launcher::LaunchOptions opt;
  bool dryRun = false, slurm = false, wait = false;
  std::string script;
  // Whether the user gave these options (else the config's slurm section sets them).
  bool np = false, nodes = false, tasksPerNode = false, time = false, partition = false,
       account = false, jobName = false, output = false;
};

void addOptions(CLI::App& app, Args& a, std::vector<std::pair<CLI::Option*, bool*>>& given) {
  cdl::launcher::LaunchOptions& opt = a.opt;
  app.add_option("config", opt.config, "Experiment config (YAML) for cdl-train");
  given.emplace_back(
      app.add_option("-n,--np", opt.np, "Number of ranks (-np works too, as with mpirun)")
          ->check(CLI::PositiveNumber),
      &a.np);
  app.add_option("-H,--host", opt.hosts, "Hosts and slots: host1:2,host2:2");
  app.add_option("--hostfile", opt.hostfile, "An OpenMPI hostfile");
  app.add_flag("--dry-run", a.dryRun, "Print the command (or the sbatch script) and exit");
  app.add_flag("--bench", opt.bench, "Run cdl-bench (arguments after --) instead of cdl-train");
  app.add_option("--max-restarts", opt.maxRestarts,
                 "Start a failed job again up to N times, from the newest step every rank holds")
      ->check(CLI::Range(0, 1000));
  app.add_option("--program", opt.program, "The executable to run (default: next to cdl-launch)");
  // One value per use: a repeatable option must not swallow the config that follows it.
  app.add_option("--mpi-arg", opt.mpiArgs, "An argument for mpirun as it is (repeatable)")
      ->allow_extra_args(false);
  app.add_option("-x,--env", opt.env, "Forward NAME or NAME=VALUE to every rank (repeatable)")
      ->allow_extra_args(false);
  app.add_option("--emulate", opt.emulate,
                 "Emulate N nodes here: network namespaces on a bridge with shaped links (root; "
                 "-np defaults to N and must be a multiple of it)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--bandwidth", opt.bandwidth, "With --emulate: per link and direction (tc units)");
  app.add_option("--latency", opt.latency, "With --emulate: one-way delay, e.g. 5ms (needs netem)");
  app.add_flag("--slurm", a.slurm, "Write an sbatch script, submit it and print the job id");
  app.add_flag("--wait", a.wait, "With --slurm: wait for the job and return its status");
  // The SLURM settings default to the config's slurm section (cdl-train jobs).
  given.emplace_back(app.add_option("--nodes", opt.nodes, "SLURM: nodes (slurm.nodes)"), &a.nodes);
  given.emplace_back(app.add_option("--tasks-per-node", opt.tasksPerNode,
                                    "SLURM: tasks per node (slurm.tasks_per_node; np/nodes)"),
                     &a.tasksPerNode);
  given.emplace_back(app.add_option("--time", opt.time, "SLURM: time limit (slurm.time)"), &a.time);
  given.emplace_back(
      app.add_option("--partition", opt.partition, "SLURM: partition (slurm.partition)"),
      &a.partition);
  given.emplace_back(app.add_option("--account", opt.account, "SLURM: account (slurm.account)"),
                     &a.account);
  given.emplace_back(
      app.add_option("--job-name", opt.jobName, "SLURM: job name (slurm.job_name; the run's name)"),
      &a.jobName);
  given.emplace_back(app.add_option("--output", opt.output,
                                    "SLURM: output file pattern, e.g. cdl-%j.out (slurm.output)"),
                     &a.output);
  app.add_option("--script", a.script, "SLURM: where to write the sbatch script");
  app.add_option("--signal-before", a.opt.signalBefore,
                 "SLURM: SIGUSR1 this many seconds before the time limit, which stops the ranks "
                 "with a checkpoint (0: none)")
      ->check(CLI::Range(0, 86400));
  app.add_flag("--requeue", a.opt.requeue,
               "SLURM: a job stopped so requeues itself and continues from its checkpoint");
}

// Parses the command line into a; returns an exit status when cdl-launch is to stop (--help or
// a bad option), else -1.
int parseArgs(int argc, char** argv, Args& a) {
  CLI::App app{"cdl-launch: run cdl-train (or cdl-bench) on local ranks, hosts or SLURM"};
  std::vector<std::pair<CLI::Option*, bool*>> given;
  addOptions(app, a, given);
  app.allow_extras(false);
  app.positionals_at_end(false);
  // Everything after "--" goes to the program.
  std::vector<std::string> ours;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      a.opt.args.assign(argv + i + 1, argv + argc);
      break;
    }
    ours.push_back(arg == "-np" ? "--np" : arg);  // mpirun's spelling
  }
  std::reverse(ours.begin(), ours.end());  // CLI11 takes the arguments in reverse
  try {
    app.parse(ours);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [option, flag] : given) *flag = option->count() > 0;
  a.opt.runAsRoot = ::geteuid() == 0;
  return -1;
}

// A cdl-train job: checks the config here, once, rather than in every rank, reading the forwarded
// arguments exactly as cdl-train will, and takes the SLURM settings the user left out from its
// slurm section.
void applyConfig(Args& a) {
  cdl::launcher::LaunchOptions& opt = a.opt;
  CDL_CHECK(!opt.config.empty(), "cdl-launch: give a config (e.g. configs/fmnist_cnn.yaml)");
  CLI::App trainApp{"cdl-train"};
  cdl::core::TrainArgs trainArgs;
  cdl::core::addTrainArgs(trainApp, trainArgs);
  std::vector<std::string> forwarded = {opt.config};
  forwarded.insert(forwarded.end(), opt.args.begin(), opt.args.end());
  std::reverse(forwarded.begin(), forwarded.end());
  try {
    trainApp.parse(forwarded);
  } catch (const CLI::ParseError& e) {
    CDL_THROW("cdl-launch: the arguments after -- are not cdl-train's: ", e.what());
  }
  const cdl::core::Config cfg = cdl::core::loadConfig(opt.config, trainArgs.sets);
  const cdl::core::Config::Slurm& sl = cfg.slurm;
  if (!a.nodes) opt.nodes = static_cast<int>(sl.nodes);
  if (!a.tasksPerNode) opt.tasksPerNode = static_cast<int>(sl.tasksPerNode);
  if (!a.time) opt.time = sl.time;
  if (!a.partition) opt.partition = sl.partition;
  if (!a.account) opt.account = sl.account;
  if (!a.jobName) opt.jobName = sl.jobName.empty() ? cfg.name : sl.jobName;
  if (!a.output) opt.output = sl.output;
  // Without -np, a SLURM job fills the nodes it asks for.
  if (a.slurm && !a.np && opt.tasksPerNode > 0) opt.np = opt.nodes * opt.tasksPerNode;
}

// Writes the sbatch script and submits it (or prints it with --dry-run); returns the status.
int submit(Args& a, const std::vector<std::string>& env) {
  cdl::launcher::LaunchOptions& opt = a.opt;
  char cwd[4096];
  if (::getcwd(cwd, sizeof(cwd)) != nullptr) opt.workDir = cwd;
  const std::string text = cdl::launcher::sbatchScript(opt, env);
  if (a.dryRun) {
    std::fputs(text.c_str(), stdout);
    return 0;
  }
  if (a.script.empty()) a.script = opt.jobName + ".sbatch";
  {
    std::ofstream out(a.script, std::ios::trunc);
    out << text;
    CDL_CHECK(out.good(), "cdl-launch: cannot write ", a.script);
  }
  std::vector<std::string> cmd = {"sbatch", "--parsable"};
  if (a.wait) cmd.push_back("--wait");
  cmd.push_back(a.script);
  std::fprintf(stderr, "cdl-launch: %s\n", cdl::launcher::joinCommand(cmd).c_str());
  JobReport report;
  const int rc = runJob(cmd, &report);
  if (rc != 0) std::fprintf(stderr, "cdl-launch: sbatch exited with status %d\n", rc);
  return rc;
}

// Runs the job's command `cmd`, and again after a failure up to opt.maxRestarts times (Note
// [Restarts]); returns the last attempt's status.
int runWithRestarts(cdl::launcher::LaunchOptions& opt, const std::vector<std::string>& env,
                    std::vector<std::string> cmd) {
  int64_t lastResumed = -2;  // the step the last failed attempt resumed from (-1: a fresh start)
  for (int restart = 0;; ++restart) {
    std::fprintf(stderr, "cdl-launch: %s\n", cdl::launcher::joinCommand(cmd).c_str());
    JobReport report;
    const int rc = runJob(cmd, &report);
    if (restart > 0 && report.resumedStep >= 0) {
      std::fprintf(stderr, "cdl-launch: restart %d resumed from step %lld\n", restart,
                   static_cast<long long>(report.resumedStep));
    }
    if (rc == 0 || rc == cdl::core::kExitResumable) return rc;
    if (report.failedRank >= 0) {
      std::fprintf(stderr, "cdl-launch: rank %d failed first: %s\n", report.failedRank,
                   report.firstError.c_str());
    }
    std::fprintf(stderr, "cdl-launch: the job exited with status %d\n", rc);
    if (restart >= opt.maxRestarts) {
      if (opt.maxRestarts > 0) {
        std::fprintf(stderr, "cdl-launch: no restarts left (--max-restarts %d)\n", opt.maxRestarts);
      }
      return rc;
    }
    if (report.resumedStep == lastResumed) {
      std::fprintf(stderr, "cdl-launch: the job failed twice after %s; not restarting it again\n",
                   report.resumedStep < 0
                       ? "starting afresh"
                       : ("resuming from step " + std::to_string(report.resumedStep)).c_str());
      return rc;
    }
    lastResumed = report.resumedStep;
    const double delay = cdl::launcher::restartDelaySeconds(restart);
    std::fprintf(stderr,
                 "cdl-launch: restart %d of %d in %.0f s, from the newest step every rank holds\n",
                 restart + 1, opt.maxRestarts, delay);
    ::usleep(static_cast<useconds_t>(delay * 1e6));
    if (restart == 0) {
      opt.args.push_back("--restart");
      cmd = cdl::launcher::launchCommand(opt, env);
      if (opt.emulate > 0) {
        cmd = cdl::launcher::emulateCommand(opt, selfDir() + "/cdl-emulate", cmd);
      }
    }
  }
}

// Runs the job here (local ranks, hosts, an emulated cluster or inside a SLURM allocation), or
// prints its command with --dry-run; returns its status and names the rank that failed first.
int runHere(Args& a, const std::vector<std::string>& env) {
  cdl::launcher::LaunchOptions& opt = a.opt;
  if (opt.emulate > 0 && !a.np) opt.np = opt.emulate;
  opt.inAllocation = std::getenv("SLURM_JOB_ID") != nullptr;
  opt.srunPmix = opt.inAllocation && srunOffersPmix();
  std::vector<std::string> cmd = cdl::launcher::launchCommand(opt, env);
  if (opt.emulate > 0) cmd = cdl::launcher::emulateCommand(opt, selfDir() + "/cdl-emulate", cmd);
  CDL_CHECK(opt.emulate == 0 || opt.runAsRoot || a.dryRun,
            "cdl-launch --emulate needs root (network namespaces and tc)");
  if (a.dryRun) {
    std::printf("%s\n", cdl::launcher::joinCommand(cmd).c_str());
    return 0;
  }
  return runWithRestarts(opt, env, cmd);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (const int rc = parseArgs(argc, argv, a); rc >= 0) return rc;
  try {
    cdl::launcher::LaunchOptions& opt = a.opt;
    if (opt.program.empty()) opt.program = selfDir() + (opt.bench ? "/cdl-bench" : "/cdl-train");
    if (!opt.bench) applyConfig(a);
    const std::vector<std::string> env = cdl::launcher::cdlEnvironment();
    for (const std::string& name : cdl::launcher::undeclaredCdlVariables()) {
      std::fprintf(stderr, "cdl-launch: warning: %s is not a cdl knob and is not forwarded (%s)\n",
                   name.c_str(), knownKnobs().c_str());
    }
    CDL_CHECK(!(a.slurm && opt.emulate > 0), "cdl-launch: --emulate runs here, not with --slurm");
    CDL_CHECK(opt.maxRestarts == 0 || (!a.slurm && !opt.bench),
              "cdl-launch: --max-restarts restarts cdl-train jobs run here (not --slurm, whose "
              "jobs requeue, nor --bench)");
    return a.slurm ? submit(a, env) : runHere(a, env);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
