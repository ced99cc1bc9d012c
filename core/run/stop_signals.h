#pragma once

namespace cdl::core {

// Note [Stop signals]
// A job on a cluster is stopped from outside: SLURM sends SIGTERM (or the signal --signal asks
// for) ahead of a time limit or a preemption, a user presses Ctrl-C, mpirun forwards SIGUSR1.
// cdl-train installs handlers for SIGTERM, SIGINT and SIGUSR1 (installStopSignals); the first
// one only records the request. After every step the ranks of the job sum their requests (one
// 1-float allreduce), so a signal that reaches any rank stops all of them after the same step:
// each writes the checkpoint of that step, the run ends, and cdl-train exits with
// kExitResumable, which says "stopped, resumable" (0 is success, 2 a failure) and which
// cdl-launch passes on. The handlers are one-shot: a second signal during the checkpoint ends the
// process as that signal does by default, and the checkpoints already written stay intact (they
// are written atomically, Note [Atomic writes]). The training loop itself knows only
// stopRequested(); tests call requestStop() as the handler would.

// cdl-train's exit status for a run stopped by a signal with a checkpoint to resume from.
inline constexpr int kExitResumable = 3;

// Installs the handlers (SIGTERM, SIGINT, SIGUSR1), each for its first delivery.
void installStopSignals();

// The signal that asked this process to stop, or 0.
int stopRequested();

// Records a stop request as the handler does (async-signal-safe); a later one keeps the first.
void requestStop(int signal);

// Forgets the request (a process that trains again, e.g. a test).
void clearStopRequest();

// "SIGTERM", "SIGINT", "SIGUSR1", else "signal N".
const char* stopSignalName(int signal);

}  // namespace cdl::core
