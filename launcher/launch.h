#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cdl::launcher {

// What cdl-launch was asked to start (flags follow mpirun/torchrun habits).
struct LaunchOptions {
  int np = 1;                        // ranks in all
  int maxRestarts = 0;               // Note [Restarts]
  std::string hosts;                 // -H host1:2,host2:2
  std::string hostfile;              // --hostfile, OpenMPI's format
  bool bench = false;                // run cdl-bench instead of cdl-train
  std::string program;               // the cdl-train or cdl-bench executable
  std::string config;                // the experiment config (cdl-train)
  std::vector<std::string> args;     // passed to the program (after --)
  std::vector<std::string> mpiArgs;  // passed to mpirun as they are (--mpi-arg, repeatable)
  std::vector<std::string> env;      // NAME or NAME=VALUE to forward to every rank (-x)
  bool runAsRoot = false;            // cdl-launch runs as root: OpenMPI wants --allow-run-as-root
  // Inside a SLURM allocation (salloc, sbatch): the allocation's nodes and slots are the hosts.
  bool inAllocation = false;
  bool srunPmix = false;  // in an allocation whose srun offers PMIx: launch with srun

  // Emulated cluster (cdl-emulate): nodes as network namespaces with shaped links; 0: off.
  int emulate = 0;
  std::string bandwidth = "1gbit";  // per link and direction, in tc's units
  std::string latency;              // one-way delay (netem), empty: none

  // SLURM.
  int nodes = 1;
  int tasksPerNode = 0;  // 0: np / nodes
  std::string time = "01:00:00", partition, account, jobName = "cdl", output;
  std::string workDir;  // the job's working folder (the submit folder by default)
  // Note [SLURM stops]: SIGUSR1 to the batch shell this many seconds before the time limit (0:
  // none), and a stopped job requeues itself.
  int signalBefore = 120;
  bool requeue = false;
};

// A word as the shell reads it back unchanged: single-quoted unless it is made only of characters
// no shell treats specially.
std::string shellQuote(const std::string& word);
// The words, each quoted, separated by spaces.
std::string joinCommand(const std::vector<std::string>& words);

// The mpirun command line (argv) for a launch. Local launches (no -H, no hostfile, not emulated,
// not in a SLURM allocation) may oversubscribe the cores; emulated ones get their hosts from
// cdl-emulate; ranks are not bound to cores (each rank runs its own intra-op threads); every CDL_*
// variable of the launcher's environment is forwarded besides opt.env. Throws cdl::Error naming the
// flag for inconsistent options.
std::vector<std::string> mpirunCommand(const LaunchOptions& opt,
                                       const std::vector<std::string>& cdlEnv);

// The command that runs `mpirun` (mpirunCommand's argv) on opt.emulate emulated nodes through the
// cdl-emulate script at `tool`, opt.np / opt.emulate ranks per node. Throws cdl::Error unless np
// is a multiple of the node count.
std::vector<std::string> emulateCommand(const LaunchOptions& opt, const std::string& tool,
                                        const std::vector<std::string>& mpirun);

// The command for a launch without --slurm: srun --mpi=pmix inside an allocation that offers PMIx
// (unless -H, --hostfile or --mpi-arg ask for mpirun), mpirunCommand otherwise. With srun, opt.env
// values are set through `env` in front of it (srun passes the whole environment on).
std::vector<std::string> launchCommand(const LaunchOptions& opt,
                                       const std::vector<std::string>& cdlEnv);

// The program and its arguments (what every rank runs).
std::vector<std::string> programCommand(const LaunchOptions& opt);

// Note [SLURM stops]
// A cdl-train job under SLURM asks for SIGUSR1 ahead of its time limit (--signal=B:USR1@S,
// cdl-launch --signal-before S): the batch shell runs the ranks' step in the background and
// passes the signal on to srun or mpirun, which forward it to every rank, which stop after the
// same step with a checkpoint (Note [Stop signals]) and exit with status 3. With --requeue the
// script then requeues its job (scontrol requeue) instead of ending it, and the requeued run, which
// SLURM_RESTART_COUNT marks, continues with cdl-train --restart from the newest step every rank
// holds; the output file is appended to, and each run says that it was requeued, and cdl-train
// from which step it resumed. A preemption's SIGTERM reaches the ranks directly, with the same
// effect.

// An sbatch script that runs the program on opt.nodes x tasks-per-node tasks with srun (PMIx) when
// the cluster offers it, else mpirun inside the allocation (Note [SLURM stops]). Every user string
// is quoted.
std::string sbatchScript(const LaunchOptions& opt, const std::vector<std::string>& cdlEnv);

// The declared CDL_* knobs (Note [Knobs]) set in this process's environment, as NAME=VALUE: what
// every rank gets. Throws cdl::Error naming the variable when a value is malformed, so that a bad
// knob stops the launch before any rank starts.
std::vector<std::string> cdlEnvironment();
// The CDL_* names in this process's environment that are not declared knobs (typos, most
// likely): cdl-launch warns about them and does not forward them.
std::vector<std::string> undeclaredCdlVariables();

// Scans a line of the job's stderr for cdl's error line, "cdl-train: [rank R] ..." (or
// cdl-bench); returns R or -1.
int failedRankOf(const std::string& line);

// Scans a line of mpirun's output for a rank that a signal killed ("process rank R with PID P
// on node N exited on signal S"); returns R or -1. Such a rank failed without a line of its
// own, and before the errors its loss causes in the others.
int killedRankOf(const std::string& line);

// Scans a line of the job's output for rank 0's "resumed from ... (step S, ...)"; returns S or
// -1.
int64_t resumedStepOf(const std::string& line);

// Note [Restarts]
// cdl-launch --max-restarts N (local ranks, hosts, the emulated cluster): when the job fails
// (any status but 0 and cdl-train's 3, "stopped, resumable"), mpirun has already brought every
// rank down; cdl-launch names the rank that failed first and its error line, waits
// restartDelaySeconds, and starts the job again with cdl-train --restart, which continues from
// the newest step every rank holds intact (or starts afresh when some rank holds none). It does
// so up to N times. Two attempts in a row that fail after resuming from the same step (no
// progress: the failure repeats there) stop the retries, and cdl-launch says so. The job's own
// "resumed from" line gives the step each restart continued from, which cdl-launch repeats.
// The back-off before restart k (0-based): 2, 4, 8, 16, then 30 seconds.
double restartDelaySeconds(int restart);

// Note [A job that does not end]
// When a rank fails, mpirun normally brings the others down within a second or two. It cannot
// when a node is cut off (a link down): it waits for that node's daemon, which it can no longer
// reach, for as long as TCP takes to give up (many minutes), although every rank has already
// ended (each names the collective and the ranks it waited for, Note [Peer status]). So once a
// rank's error line has come, cdl-launch gives the job kAbortGraceSeconds to end, then sends it
// SIGTERM, and SIGKILL kAbortGraceSeconds later; it says which it did. The job's exit status is
// then 128 + the signal, and --max-restarts treats it as any failure. cdl-emulate does the same
// to its mpirun when it gets SIGTERM, then kills whatever still runs on its nodes.
inline constexpr double kAbortGraceSeconds = 5.0;

}  // namespace cdl::launcher
