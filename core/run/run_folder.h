#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/config/config.h"

namespace cdl::core {

// Note [Run folder]
// A run lives in <log.runs_dir>/<name>: config.yaml, metrics.jsonl and summary.json (rank 0),
// and checkpoints/ (every rank, Note [Checkpoints]). A fresh run refuses a folder that already
// holds a run, so nothing written is overwritten; --resume continues one from the newest step of
// which every rank holds a checkpoint. Each rank checks what it sees and the ranks agree through
// a collective before anything is written, so one rank's refusal stops all of them.

// <cfg.log.runsDir>/<cfg.name>.
std::string runFolder(const Config& cfg);
// The checkpoint folder of the run in runDir.
std::string checkpointFolder(const std::string& runDir);

// Collective. `steps` are this rank's checkpoint steps (checkpointSteps). A fresh run (resume
// false) throws cdl::Error on every rank when any rank sees runDir/metrics.jsonl or has a
// checkpoint; a resumed one throws on every rank unless every rank has a checkpoint.
void checkRunFolder(comm::Communicator& c, const std::string& runDir,
                    const std::vector<int64_t>& steps, bool resume);

// Collective. A restarted job (cdl-train --restart, which cdl-launch --max-restarts passes):
// true when every rank holds a checkpoint, so the run resumes; false when some rank holds none,
// so it starts afresh in its folder (the records written before are dropped).
bool restartResumes(comm::Communicator& c, const std::vector<int64_t>& steps);

// Collective. The step to resume from: the newest step of which every rank holds an intact
// checkpoint in dir (checkpointProblem). `steps` are this rank's, oldest first. A newer file that
// is corrupt is skipped with a warning naming it and what is wrong; when no step is intact on
// every rank, every rank throws cdl::Error listing each rank's intact steps.
int64_t commonResumeStep(comm::Communicator& c, const std::string& dir,
                         const std::vector<int64_t>& steps);

}  // namespace cdl::core
