#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/config.h"

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

// Collective. The step to resume from: the smallest of the ranks' newest checkpoint steps (the
// newest that every rank can hold). `steps` are this rank's, oldest first; throws cdl::Error on
// a rank that lacks that step (it kept too few checkpoints; on every rank when one has none).
// Steps are exchanged as floats, exact up to 2^24.
int64_t commonResumeStep(comm::Communicator& c, const std::vector<int64_t>& steps);

}  // namespace cdl::core
