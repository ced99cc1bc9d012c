#include "bench/run_plot.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "kernels/base/error.h"

namespace cdl::bench {

namespace fs = std::filesystem;

namespace {

// Appends (record[xKey], record[yKey]) when both are numbers.
void addPoint(const nlohmann::json& record, const char* xKey, const char* yKey, Series* s) {
  const auto x = record.find(xKey), y = record.find(yKey);
  if (x == record.end() || y == record.end() || !x->is_number() || !y->is_number()) return;
  s->x.push_back(x->get<double>());
  s->y.push_back(y->get<double>());
}

}  // namespace

RunCurves readRunCurves(const std::string& runDir) {
  const fs::path file = fs::path(runDir) / "metrics.jsonl";
  std::error_code ec;
  CDL_CHECK(fs::is_regular_file(file, ec), runDir,
            ": no metrics.jsonl (not the folder of a cdl-train run, or one that logged nothing)");
  std::ifstream in(file);
  CDL_CHECK(in.good(), file.string(), ": cannot be read");
  RunCurves c;
  c.name = fs::path(runDir).lexically_normal().filename().string();
  if (c.name.empty() || c.name == ".")
    c.name = fs::path(runDir).lexically_normal().parent_path().filename().string();
  int64_t steps = 0, lineNo = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    CDL_CHECK(j.is_object(), file.string(), ":", lineNo, ": not a JSON object");
    const std::string kind = j.value("kind", "");
    if (kind == "step") {
      ++steps;
      addPoint(j, "step", "train_loss", &c.trainLossByStep);
      addPoint(j, "wall_s", "train_loss", &c.trainLossByWall);
      addPoint(j, "step", "wire_mb_per_step", &c.wireMbByStep);
    } else if (kind == "epoch") {
      addPoint(j, "step", "test_accuracy", &c.testAccuracyByStep);
      addPoint(j, "wall_s", "test_accuracy", &c.testAccuracyByWall);
      addPoint(j, "step", "test_loss", &c.testLossByStep);
    }
  }
  CDL_CHECK(steps > 0, file.string(), ": no step records to plot");
  return c;
}

void plotRuns(const std::vector<std::string>& runDirs, const std::string& pngPath,
              const std::string& title) {
  CDL_CHECK(!runDirs.empty(), "no run folders to plot");
  const fs::path parent = fs::path(pngPath).parent_path();
  std::error_code ec;
  CDL_CHECK(parent.empty() || fs::is_directory(parent, ec), pngPath, ": the folder ",
            parent.string(), " does not exist");
  std::vector<RunCurves> runs;
  std::map<std::string, int> seen;
  for (const std::string& dir : runDirs) {
    runs.push_back(readRunCurves(dir));
    // Two folders of the same name (runs of two machines, say) are told apart by their paths.
    if (seen[runs.back().name]++) runs.back().name = dir;
  }
  auto panel = [&](const char* panelTitle, const char* xlabel, const char* ylabel,
                   Series RunCurves::*curve, bool logY = false, bool yFromZero = false) {
    Panel p{panelTitle, xlabel, ylabel, {}, logY, yFromZero};
    for (const RunCurves& r : runs) {
      p.series.push_back(r.*curve);
      p.series.back().title = r.name;
    }
    return p;
  };
  plotPanels(pngPath, title,
             {panel("train loss", "step", "loss", &RunCurves::trainLossByStep, true),
              panel("train loss", "wall seconds", "loss", &RunCurves::trainLossByWall, true),
              panel("test accuracy", "step", "accuracy", &RunCurves::testAccuracyByStep),
              panel("test accuracy", "wall seconds", "accuracy", &RunCurves::testAccuracyByWall),
              panel("gradient bytes on the wire", "step", "MB per step", &RunCurves::wireMbByStep,
                    false, true),
              panel("test loss", "step", "loss", &RunCurves::testLossByStep, true)},
             2);
}

}  // namespace cdl::bench
