// cdl-plot: charts of one or several cdl-train runs side by side (gnuplot, Note [Plots]).
//   cdl-plot RUN_DIR... -o out.png [--title TEXT]
//   cdl-plot --points POINTS.jsonl -o out.png [--title TEXT]   (Note [Rate plot])
#include <CLI/CLI.hpp>
#include <cstdio>

#include "bench/run_plot.h"
#include "kernels/base/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "cdl-plot: train loss and test accuracy against step and wall seconds, and wire MB per "
      "step, of cdl-train run folders, into one PNG"};
  std::vector<std::string> runs;
  std::string out, title = "cdl runs", points;
  auto* runsOption =
      app.add_option("runs", runs, "Run folders (runs/<name>), each with its metrics.jsonl");
  app.add_option("--points", points,
                 "Instead of runs: test accuracy against bits per weight, one line per method, "
                 "from a JSON-lines file (bench/rate_sweep.sh)")
      ->excludes(runsOption);
  app.add_option("-o,--output", out, "The PNG to write")->required();
  app.add_option("--title", title, "The chart's title");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!points.empty()) {
      cdl::bench::plotRatePoints(points, out, title);
      std::printf("cdl-plot: wrote %s (accuracy against bits per weight)\n", out.c_str());
      return 0;
    }
    CDL_CHECK(!runs.empty(), "no run folders to plot (or --points FILE)");
    cdl::bench::plotRuns(runs, out, title);
  } catch (const cdl::Error& e) {
    std::fprintf(stderr, "cdl-plot: %s\n", e.what());
    return 1;
  }
  std::printf("cdl-plot: wrote %s (%zu run%s)\n", out.c_str(), runs.size(),
              runs.size() == 1 ? "" : "s");
  return 0;
}
