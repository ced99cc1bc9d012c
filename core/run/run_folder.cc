#include "core/run/run_folder.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/run/checkpoint.h"
#include "core/run/collectives.h"
#include "core/run/files.h"
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

bool restartResumes(comm::Communicator& c, const std::vector<int64_t>& steps) {
  return sumOverRanks(c, {steps.empty() ? 1.0f : 0.0f})[0] == 0;
}

int64_t commonResumeStep(comm::Communicator& c, const std::string& dir,
                         const std::vector<int64_t>& steps) {
  std::vector<int64_t> intact;
  std::vector<std::pair<int64_t, std::string>> broken;
  for (const int64_t s : steps) {
    std::string problem = checkpointProblem(checkpointPath(dir, s, c.rank()));
    if (problem.empty()) {
      intact.push_back(s);
    } else {
      broken.emplace_back(s, std::move(problem));
    }
  }
  Bytes mine(intact.size() * sizeof(int64_t));
  if (!intact.empty()) std::memcpy(mine.data(), intact.data(), mine.size());
  Bytes all;
  std::vector<size_t> sizes;
  c.allgatherv(mine, &all, &sizes)->wait();
  std::vector<std::vector<int64_t>> byRank(sizes.size());
  for (size_t r = 0, at = 0; r < sizes.size(); at += sizes[r++]) {
    byRank[r].resize(sizes[r] / sizeof(int64_t));
    if (sizes[r] > 0) std::memcpy(byRank[r].data(), all.data() + at, sizes[r]);
  }
  int64_t common = -1;
  for (const int64_t s : byRank[0]) {
    const bool everywhere = std::all_of(byRank.begin(), byRank.end(), [&](const auto& v) {
      return std::find(v.begin(), v.end(), s) != v.end();
    });
    if (everywhere) common = std::max(common, s);
  }
  for (const auto& [s, problem] : broken) {
    if (s > common) spdlog::warn("{}; it is skipped", errorBody(problem));
  }
  if (common < 0) {
    std::string held;
    for (size_t r = 0; r < byRank.size(); ++r) {
      held += "; rank " + std::to_string(r) + ":";
      for (const int64_t s : byRank[r]) held += " " + std::to_string(s);
      if (byRank[r].empty()) held += " none";
    }
    CDL_THROW("--resume: no step of which every rank holds an intact checkpoint in ", dir,
              " (intact steps", held, ")");
  }
  if (!intact.empty() && intact.back() > common) {
    spdlog::warn(
        "--resume: resuming from step {}, the newest that every rank holds intact (this "
        "rank also holds step {})",
        common, intact.back());
  }
  return common;
}

}  // namespace cdl::core
