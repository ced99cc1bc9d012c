#include "core/run_folder.h"

#include <algorithm>

#include "core/collectives.h"
#include "core/files.h"
#include "kernels/base/error.h"

namespace cdl::core {

std::string runFolder(const Config& cfg) { return cfg.log.runsDir + "/" + cfg.name; }

std::string checkpointFolder(const std::string& runDir) { return runDir + "/checkpoints"; }

void checkRunFolder(comm::Communicator& c, const std::string& runDir,
                    const std::vector<int64_t>& steps, bool resume) {
  const bool occupied = exists(runDir + "/metrics.jsonl") || !steps.empty();
  const auto flags = sumOverRanks(c, {occupied ? 1.0f : 0.0f, steps.empty() ? 1.0f : 0.0f});
  if (!resume) {
    CDL_CHECK(flags[0] == 0, "the run folder ", runDir,
              " already holds a run; pass --resume to continue it, or choose another name "
              "(--set name=...)");
  } else {
    CDL_CHECK(flags[1] == 0, "--resume: no checkpoint of every rank in ", checkpointFolder(runDir),
              " (", static_cast<int>(flags[1]), " of ", c.size(), " ranks have none)");
  }
}

int64_t commonResumeStep(comm::Communicator& c, const std::vector<int64_t>& steps) {
  // A rank without checkpoints still joins (with -1, which no rank holds, so all of them throw).
  std::vector<float> all(static_cast<size_t>(c.size()), 0.0f);
  all[static_cast<size_t>(c.rank())] = steps.empty() ? -1.0f : static_cast<float>(steps.back());
  all = sumOverRanks(c, all);
  const int64_t common = static_cast<int64_t>(*std::min_element(all.begin(), all.end()));
  CDL_CHECK(std::find(steps.begin(), steps.end(), common) != steps.end(), "--resume: rank ",
            c.rank(), " has no checkpoint of step ", common, " (the newest all ranks share)");
  return common;
}

}  // namespace cdl::core
