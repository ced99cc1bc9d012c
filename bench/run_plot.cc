#include "bench/run_plot.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>

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

// Calls f(record, line number) for each non-blank line of a JSON-lines file, the record null where
// the line is not JSON (the caller names what it expected).
void forEachJsonLine(const std::string& file,
                     const std::function<void(const nlohmann::json&, int64_t)>& f) {
  std::ifstream in(file);
  CDL_CHECK(in.good(), file, ": cannot be read");
  int64_t lineNo = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    f(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false), lineNo);
  }
}

}  // namespace

RunCurves readRunCurves(const std::string& runDir) {
  const fs::path file = fs::path(runDir) / "metrics.jsonl";
  std::error_code ec;
  CDL_CHECK(fs::is_regular_file(file, ec), runDir,
            ": no metrics.jsonl (not the folder of a cdl-train run, or one that logged nothing)");
  RunCurves c;
  c.name = fs::path(runDir).lexically_normal().filename().string();
  if (c.name.empty() || c.name == ".")
    c.name = fs::path(runDir).lexically_normal().parent_path().filename().string();
  int64_t steps = 0;
  forEachJsonLine(file.string(), [&](const nlohmann::json& j, int64_t lineNo) {
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
  });
  CDL_CHECK(steps > 0, file.string(), ": no step records to plot");
  return c;
}

namespace {

void checkOutputFolder(const std::string& pngPath) {
  const fs::path parent = fs::path(pngPath).parent_path();
  std::error_code ec;
  CDL_CHECK(parent.empty() || fs::is_directory(parent, ec), pngPath, ": the folder ",
            parent.string(), " does not exist");
}

}  // namespace

void plotRatePoints(const std::string& pointsFile, const std::string& pngPath,
                    const std::string& title) {
  checkOutputFolder(pngPath);
  std::vector<Series> methods;
  int64_t points = 0;
  forEachJsonLine(pointsFile, [&](const nlohmann::json& j, int64_t lineNo) {
    const bool ok = j.is_object() && j.contains("method") && j["method"].is_string() &&
                    j.contains("bits_per_weight") && j["bits_per_weight"].is_number() &&
                    j.contains("test_accuracy") && j["test_accuracy"].is_number();
    CDL_CHECK(ok, pointsFile, ":", lineNo,
              ": not a point (a JSON object with method, bits_per_weight and test_accuracy)");
    const std::string method = j["method"].get<std::string>();
    auto s = std::find_if(methods.begin(), methods.end(),
                          [&](const Series& m) { return m.title == method; });
    if (s == methods.end()) s = methods.insert(methods.end(), Series{method, {}, {}});
    s->x.push_back(j["bits_per_weight"].get<double>());
    s->y.push_back(j["test_accuracy"].get<double>());
    ++points;
  });
  CDL_CHECK(points > 0, pointsFile, ": no points to plot");
  for (Series& m : methods) {  // each method's points in order of bits
    std::vector<size_t> order(m.x.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return m.x[a] < m.x[b]; });
    Series sorted{m.title, {}, {}};
    for (size_t i : order) {
      sorted.x.push_back(m.x[i]);
      sorted.y.push_back(m.y[i]);
    }
    m = std::move(sorted);
  }
  plotPanels(pngPath, title,
             {Panel{"test accuracy against model size", "bits per weight (.cdlm)", "accuracy",
                    std::move(methods)}},
             1);
}

void plotRuns(const std::vector<std::string>& runDirs, const std::string& pngPath,
              const std::string& title) {
  CDL_CHECK(!runDirs.empty(), "no run folders to plot");
  checkOutputFolder(pngPath);
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
