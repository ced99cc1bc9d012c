#pragma once

#include <string>
#include <vector>

namespace cdl::bench {

// Note [Plots]
// Every PNG cdl draws (cdl-bench's charts, cdl-plot's run charts) is a gnuplot script run by
// runGnuplot: the data go inline as datablocks, so no file but the PNG is written, and the PNG
// appears whole or not at all (gnuplot draws into a sibling file that is renamed into place).
// A missing gnuplot or one that fails is a cdl::Error with gnuplot's own message.

// One line of a chart: y against x, drawn as lines with points.
struct Series {
  std::string title;
  std::vector<double> x, y;
};

// One chart of a grid; one without any point says "no data".
struct Panel {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  bool logY = false;
  bool yFromZero = false;  // the y axis starts at 0 (sizes, rates)
  bool logX = false;       // powers of 2 (message sizes)
};

// Draws the panels as a grid of `columns` charts a row into pngPath, under a title.
void plotPanels(const std::string& pngPath, const std::string& title,
                const std::vector<Panel>& panels, int columns);

// Draws clustered bars: one cluster per label, one bar per named column (values[c][row]; NaN
// leaves a gap).
struct BarColumn {
  std::string title;
  std::vector<double> values;
};
void plotBars(const std::string& pngPath, const std::string& title,
              const std::vector<std::string>& labels, const std::vector<BarColumn>& columns);

// Runs a gnuplot script whose output is `set output` to the file this returns for pngPath, then
// renames it to pngPath (Note [Plots]).
void runGnuplot(const std::string& script, const std::string& pngPath);
std::string partialPngPath(const std::string& pngPath);

// s as a gnuplot single-quoted string (quotes doubled).
std::string gnuplotQuoted(const std::string& s);

}  // namespace cdl::bench
