#include "launcher/launch.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::launcher {
namespace {

// Runs a shell command line and returns its standard output.
std::string shellOutput(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

const std::vector<std::string> kNastyWords = {
    "plain",        "two words", "it's", "$(touch /tmp/cdl_pwned)",
    "`id`",         "a;b",       "x\"y", "back\\slash",
    "new\nline",    "",          "*",    "~",
    "--set=name=ok"};

TEST(ShellQuote, TheShellReadsEveryWordBackUnchanged) {
  for (const std::string& w : kNastyWords) {
    // printf '%s\0' prints each argument as the shell parsed it.
    const std::string out = shellOutput("printf '%s|' " + shellQuote(w));
    EXPECT_EQ(out, w + "|") << "word: " << w;
  }
  struct stat st;
  EXPECT_NE(stat("/tmp/cdl_pwned", &st), 0) << "a quoted word ran a command";
}

LaunchOptions trainOptions() {
  LaunchOptions o;
  o.np = 4;
  o.program = "/opt/cdl/bin/cdl-train";
  o.config = "configs/fmnist_cnn.yaml";
  o.args = {"--set", "train.lr=0.1"};
  return o;
}

TEST(MpirunCommand, LocalLaunchesOversubscribeAndForwardTheEnvironment) {
  LaunchOptions o = trainOptions();
  o.env = {"OMP_PROC_BIND=false", "HOME"};
  const auto cmd = mpirunCommand(o, {"CDL_COMM_TIMEOUT=60"});
  EXPECT_EQ(joinCommand(cmd),
            "mpirun -np 4 --oversubscribe --bind-to none -x CDL_COMM_TIMEOUT=60 -x "
            "OMP_PROC_BIND=false -x HOME /opt/cdl/bin/cdl-train configs/fmnist_cnn.yaml --set "
            "train.lr=0.1");
}

// Inside a SLURM allocation the allocation is the host list: srun --mpi=pmix where SLURM offers it
// (values of -x set in front of it, since srun passes the environment on), else mpirun without
// --oversubscribe; mpirun as soon as the user asks for mpirun arguments or hosts.
TEST(LaunchCommand, InsideAnAllocationSrunWithPmixElseMpirun) {
  LaunchOptions o = trainOptions();
  o.env = {"OMP_PROC_BIND=false", "HOME"};
  EXPECT_EQ(launchCommand(o, {}), mpirunCommand(o, {}));  // not in an allocation
  o.inAllocation = true;
  o.srunPmix = true;
  EXPECT_EQ(joinCommand(launchCommand(o, {"CDL_COMM_TIMEOUT=60"})),
            "env OMP_PROC_BIND=false srun --mpi=pmix --ntasks 4 --kill-on-bad-exit=1 "
            "--cpu-bind=none /opt/cdl/bin/cdl-train configs/fmnist_cnn.yaml --set train.lr=0.1");
  o.env = {"BAD NAME=1"};
  EXPECT_THROW(launchCommand(o, {}), Error);
  o.env = {};
  o.mpiArgs = {"--mca", "btl", "tcp,self"};
  EXPECT_EQ(launchCommand(o, {})[0], "mpirun");
  o.mpiArgs = {};
  o.srunPmix = false;
  const auto cmd = launchCommand(o, {});
  EXPECT_EQ(cmd[0], "mpirun");
  EXPECT_EQ(std::find(cmd.begin(), cmd.end(), "--oversubscribe"), cmd.end());
}

TEST(MpirunCommand, HostsHostfilesAndPassThroughArguments) {
  LaunchOptions o = trainOptions();
  o.hosts = "node1:2,node2:2";
  o.mpiArgs = {"--mca", "btl_tcp_if_include", "eth0"};
  o.runAsRoot = true;
  const std::string cmd = joinCommand(mpirunCommand(o, {}));
  EXPECT_NE(cmd.find("-H node1:2,node2:2 --bind-to none --allow-run-as-root --mca "
                     "btl_tcp_if_include eth0 /opt/cdl"),
            std::string::npos)
      << cmd;
  EXPECT_EQ(cmd.find("--oversubscribe"), std::string::npos);
  o.hosts = "node1:2;reboot";
  EXPECT_THROW(mpirunCommand(o, {}), Error);
  o.hosts = "node1,--mca";
  EXPECT_THROW(mpirunCommand(o, {}), Error);
  o.hosts = "-node1:2";
  EXPECT_THROW(mpirunCommand(o, {}), Error);
  o.hosts.clear();
  o.hostfile = "/nonexistent/hostfile";
  EXPECT_THROW(mpirunCommand(o, {}), Error);
  // A hostfile's lines follow the same rules: host [slots=N], comments and blank lines.
  const std::string good = ::testing::TempDir() + "/hosts.good",
                    bad = ::testing::TempDir() + "/hosts.bad";
  std::ofstream(good) << "# cluster\nnode1 slots=2\n\nnode2 slots=2 max_slots=4  # spare\n";
  std::ofstream(bad) << "node1 slots=2\n--mca x\n";
  o.hostfile = good;
  EXPECT_NO_THROW(mpirunCommand(o, {}));
  o.hostfile = bad;
  try {
    mpirunCommand(o, {});
    ADD_FAILURE() << "a hostfile line starting with - was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad + ":2: '--mca x'"), std::string::npos) << e.what();
  }
  o.hostfile.clear();
  o.env = {"A B=1"};
  EXPECT_THROW(mpirunCommand(o, {}), Error);
}

TEST(MpirunCommand, BenchRunsCdlBenchWithItsArguments) {
  LaunchOptions o;
  o.np = 2;
  o.bench = true;
  o.program = "cdl-bench";
  o.args = {"allreduce", "--max-bytes", "16M"};
  EXPECT_EQ(programCommand(o),
            (std::vector<std::string>{"cdl-bench", "allreduce", "--max-bytes", "16M"}));
  o.bench = false;
  EXPECT_THROW(programCommand(o), Error);  // training needs a config
}

// Emulated nodes are separate hosts with one core's share each: mpirun must not be told to
// oversubscribe (it would pack ranks on one node), and the hosts come from cdl-emulate.
TEST(EmulateCommand, WrapsMpirunWithoutOversubscribingOrHosts) {
  LaunchOptions o = trainOptions();
  o.emulate = 2;
  o.bandwidth = "100mbit";
  o.latency = "5ms";
  const auto mpirun = mpirunCommand(o, {});
  EXPECT_EQ(std::find(mpirun.begin(), mpirun.end(), "--oversubscribe"), mpirun.end());
  EXPECT_EQ(joinCommand(emulateCommand(o, "/opt/cdl/bin/cdl-emulate", mpirun)),
            "/opt/cdl/bin/cdl-emulate --nodes 2 --slots 2 --bandwidth 100mbit --latency 5ms -- "
            "mpirun -np 4 --bind-to none /opt/cdl/bin/cdl-train configs/fmnist_cnn.yaml --set "
            "train.lr=0.1");
  o.np = 3;  // not a whole number of ranks per node
  EXPECT_THROW(emulateCommand(o, "cdl-emulate", mpirun), Error);
  o.np = 4;
  o.hosts = "node1:2,node2:2";
  EXPECT_THROW(mpirunCommand(o, {}), Error);
}

TEST(SbatchScript, RunsTheProgramWithExactlyItsArgumentsThroughSrun) {
  char tmpl[] = "/tmp/cdl_launch_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  // A stand-in srun that offers pmix and records the arguments it is given, one per line.
  {
    std::ofstream fake(dir + "/srun");
    fake << "#!/bin/bash\nif [ \"$1\" = --mpi=list ]; then echo pmix; exit 0; fi\n"
         << "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > " << dir << "/args\n";
  }
  chmod((dir + "/srun").c_str(), 0755);
  LaunchOptions o = trainOptions();
  o.args = {"--set", "name=$(touch /tmp/cdl_pwned)", "--set", "log.runs_dir=it's here"};
  o.env = {"GREETING=hello world"};
  o.nodes = 2;
  o.workDir = dir;
  const std::string script = sbatchScript(o, {"CDL_LOG_LEVEL=debug"});
  EXPECT_NE(script.find("#SBATCH --nodes=2\n"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --ntasks-per-node=2\n"), std::string::npos);
  {
    std::ofstream out(dir + "/job.sbatch");
    out << script;
  }
  ASSERT_EQ(std::system(("PATH=" + dir + ":$PATH bash " + dir + "/job.sbatch").c_str()), 0);
  std::ifstream in(dir + "/args");
  std::vector<std::string> args;
  std::string line;
  while (std::getline(in, line)) args.push_back(line);
  EXPECT_EQ(args, (std::vector<std::string>{
                      "--mpi=pmix", "/opt/cdl/bin/cdl-train", "configs/fmnist_cnn.yaml", "--set",
                      "name=$(touch /tmp/cdl_pwned)", "--set", "log.runs_dir=it's here"}));
  struct stat st;
  EXPECT_NE(stat("/tmp/cdl_pwned", &st), 0);
  std::system(("rm -rf " + dir).c_str());
}

// Note [SLURM stops]: the signal ahead of the limit, and the requeue of a stopped job.
TEST(SbatchScript, AsksForTheStopSignalAndRequeuesAStoppedJob) {
  LaunchOptions o = trainOptions();
  std::string script = sbatchScript(o, {});
  EXPECT_NE(script.find("#SBATCH --signal=B:USR1@120\n"), std::string::npos);
  EXPECT_EQ(script.find("--requeue"), std::string::npos);
  EXPECT_NE(script.find("trap 'kill -USR1 \"$step\""), std::string::npos);
  o.signalBefore = 0;
  o.requeue = true;
  script = sbatchScript(o, {});
  EXPECT_EQ(script.find("--signal"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --requeue\n#SBATCH --open-mode=append\n"), std::string::npos);
  EXPECT_NE(script.find("scontrol requeue \"$SLURM_JOB_ID\""), std::string::npos);
  EXPECT_NE(script.find("restart=(--restart)"), std::string::npos);
  o.bench = true;
  EXPECT_THROW(sbatchScript(o, {}), Error);
}

TEST(SbatchScript, RefusesDirectivesSbatchCannotTake) {
  LaunchOptions o = trainOptions();
  o.jobName = "my job";
  EXPECT_THROW(sbatchScript(o, {}), Error);
  o = trainOptions();
  o.partition = "gpu\n#SBATCH --account=other";
  EXPECT_THROW(sbatchScript(o, {}), Error);
  o = trainOptions();
  o.time = "1 hour";
  EXPECT_THROW(sbatchScript(o, {}), Error);
  o.time = "1-00:00:00";
  EXPECT_NO_THROW(sbatchScript(o, {}));
  // The job name names the script file too: it cannot leave its folder.
  for (const char* name : {"../escape", "a/b", "..", "-x"}) {
    o.jobName = name;
    EXPECT_THROW(sbatchScript(o, {}), Error) << name;
  }
}

TEST(FailedRank, FindsCdlsErrorLinesOnly) {
  EXPECT_EQ(failedRankOf("cdl-train: [rank 3] data.cc:10: missing file\n"), 3);
  EXPECT_EQ(failedRankOf("[1,0]<stderr>:cdl-bench: [rank 12] bad size"), 12);
  EXPECT_EQ(failedRankOf("[rank 0] [info] step 50"), -1);
  EXPECT_EQ(failedRankOf("MPI_ABORT was invoked on rank 0"), -1);
}

// Note [Restarts]: what cdl-launch reads off a failed attempt and how long it waits.
TEST(Restarts, KilledRanksResumedStepsAndTheBackOff) {
  EXPECT_EQ(killedRankOf("mpirun noticed that process rank 2 with PID 0 on node vm exited on "
                         "signal 9 (Killed)."),
            2);
  EXPECT_EQ(killedRankOf("cdl-train: [rank 1] timed out"), -1);
  EXPECT_EQ(
      resumedStepOf("[12:00:00.000] [rank 0] [info] resumed from /r/ckpt-0000000040.rank0.ckpt "
                    "(step 40, epoch 1)"),
      40);
  EXPECT_EQ(resumedStepOf("[12:00:00.000] [rank 1] [info] resumed from /r/x (step 40, epoch 1)"),
            -1);
  EXPECT_EQ(resumedStepOf("[rank 0] [info] step 40/64"), -1);
  const double want[] = {2, 4, 8, 16, 30, 30};
  for (int k = 0; k < 6; ++k) EXPECT_EQ(restartDelaySeconds(k), want[k]) << k;
}

TEST(Knobs, DeclaredKnobsAreForwardedAndTyposAreReportedNotForwarded) {
  ::setenv("CDL_LOG_LEVEL", "debug", 1);
  ::setenv("CDL_LOG_LEVL", "debug", 1);
  const auto env = cdlEnvironment();
  EXPECT_NE(std::find(env.begin(), env.end(), "CDL_LOG_LEVEL=debug"), env.end());
  for (const std::string& e : env) EXPECT_EQ(e.rfind("CDL_LOG_LEVL", 0), std::string::npos) << e;
  const auto unknown = undeclaredCdlVariables();
  EXPECT_NE(std::find(unknown.begin(), unknown.end(), "CDL_LOG_LEVL"), unknown.end());
  ::unsetenv("CDL_LOG_LEVL");
  ::unsetenv("CDL_LOG_LEVEL");
}

TEST(Knobs, AMalformedKnobStopsTheLaunchNamingIt) {
  ::setenv("CDL_COMM_TIMEOUT", "ten", 1);
  try {
    cdlEnvironment();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CDL_COMM_TIMEOUT='ten'"), std::string::npos) << e.what();
  }
  ::unsetenv("CDL_COMM_TIMEOUT");
}

}  // namespace
}  // namespace cdl::launcher
