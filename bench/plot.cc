#include "bench/plot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "kernels/base/error.h"

namespace cdl::bench {

std::string gnuplotQuoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += (c == '\n' || c == '\r') ? ' ' : c;
  }
  return out + "'";
}

std::string partialPngPath(const std::string& pngPath) { return pngPath + ".partial"; }

void runGnuplot(const std::string& script, const std::string& pngPath) {
  const std::string partial = partialPngPath(pngPath);
  std::remove(partial.c_str());
  // gnuplot reads the script on stdin; its messages come back through a scratch file.
  char errPath[] = "/tmp/cdl_gnuplot.XXXXXX";
  const int errFd = mkstemp(errPath);
  CDL_CHECK(errFd >= 0, "plot ", pngPath, ": cannot create a scratch file for gnuplot's messages");
  ::close(errFd);
  const std::string cmd = std::string("gnuplot 2>'") + errPath + "' >&2";
  FILE* pipe = popen(cmd.c_str(), "w");
  CDL_CHECK(pipe != nullptr, "plot ", pngPath, ": cannot run gnuplot");
  std::fwrite(script.data(), 1, script.size(), pipe);
  const int status = pclose(pipe);
  std::string messages;
  if (FILE* f = std::fopen(errPath, "r")) {
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && messages.size() < 4000)
      messages.append(buf, n);
    std::fclose(f);
  }
  std::remove(errPath);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code != 0) {
    std::remove(partial.c_str());
    CDL_CHECK(code != 127, "plot ", pngPath,
              ": gnuplot is not installed (scripts/install-deps.sh installs gnuplot-nox)");
    CDL_CHECK(false, "plot ", pngPath, ": gnuplot failed (exit ", code, "): ", messages);
  }
  CDL_CHECK(std::rename(partial.c_str(), pngPath.c_str()) == 0, "plot ", pngPath,
            ": gnuplot wrote no image", messages.empty() ? "" : ": ", messages);
}

namespace {

std::string header(const std::string& pngPath, int width, int height) {
  std::ostringstream gp;
  gp << "set terminal pngcairo size " << width << "," << height << " noenhanced\n"
     << "set output " << gnuplotQuoted(partialPngPath(pngPath)) << "\n";
  return gp.str();
}

}  // namespace

void plotPanels(const std::string& pngPath, const std::string& title,
                const std::vector<Panel>& panels, int columns) {
  CDL_CHECK(!panels.empty() && columns >= 1, "plot ", pngPath, ": nothing to draw");
  const int rows = (static_cast<int>(panels.size()) + columns - 1) / columns;
  std::ostringstream gp;
  gp << header(pngPath, 650 * columns, 420 * rows + 40);
  gp.precision(10);
  for (size_t p = 0; p < panels.size(); ++p) {
    for (size_t s = 0; s < panels[p].series.size(); ++s) {
      const Series& line = panels[p].series[s];
      gp << "$d" << p << "_" << s << " << EOD\n";
      for (size_t i = 0; i < line.x.size() && i < line.y.size(); ++i) {
        gp << line.x[i] << " " << line.y[i] << "\n";
      }
      gp << "EOD\n";
    }
  }
  gp << "set multiplot layout " << rows << "," << columns << " title " << gnuplotQuoted(title)
     << "\nset grid\nset key top right\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    gp << "set title " << gnuplotQuoted(panel.title) << "\nset xlabel "
       << gnuplotQuoted(panel.xlabel) << "\nset ylabel " << gnuplotQuoted(panel.ylabel) << "\n"
       << (panel.logX ? "set logscale x 2\n" : "unset logscale x\n")
       << (panel.logY ? "set logscale y\n" : "unset logscale y\n") << "set format y '%g'\n"
       << (panel.yFromZero ? "set yrange [0:*]\n" : "set autoscale y\n");
    std::ostringstream plot;
    for (size_t s = 0; s < panel.series.size(); ++s) {
      const Series& line = panel.series[s];
      if (std::min(line.x.size(), line.y.size()) == 0) continue;
      plot << (plot.tellp() > 0 ? ", " : "") << "$d" << p << "_" << s
           << " using 1:2 with linespoints pointsize 0.6 linetype " << s + 1 << " title "
           << gnuplotQuoted(line.title);
    }
    if (plot.tellp() > 0) {
      gp << "plot " << plot.str() << "\n";
    } else {
      // An empty chart keeps its place in the grid and says that it is empty.
      gp << "set xrange [0:1]\nset yrange [0:1]\nunset logscale x\nunset logscale y\n"
         << "set label 1 'no data' at graph 0.5,0.5 center\nplot NaN notitle\n"
         << "unset label 1\nset autoscale x\nset autoscale y\n";
    }
  }
  gp << "unset multiplot\n";
  runGnuplot(gp.str(), pngPath);
}

void plotBars(const std::string& pngPath, const std::string& title,
              const std::vector<std::string>& labels, const std::vector<BarColumn>& columns) {
  CDL_CHECK(!labels.empty() && !columns.empty(), "plot ", pngPath, ": nothing to draw");
  std::ostringstream gp;
  gp.precision(10);
  gp << header(pngPath, 1200, 700) << "$bars << EOD\n";
  for (size_t row = 0; row < labels.size(); ++row) {
    std::string label = labels[row];
    for (char& c : label) c = (c == '"' || c == '\n') ? '\'' : c;
    gp << '"' << label << '"';
    for (const BarColumn& col : columns) {
      const double v = row < col.values.size() ? col.values[row] : NAN;
      if (std::isfinite(v)) {
        gp << " " << v;
      } else {
        gp << " NaN";
      }
    }
    gp << "\n";
  }
  gp << "EOD\nset title " << gnuplotQuoted(title) << "\n"
     << "set style data histograms\nset style histogram clustered gap 1\n"
     << "set style fill solid 0.8 border -1\nset key outside right top\n"
     << "set xtics rotate by -35\nset grid ytics\nset yrange [0:*]\n"
     << "plot ";
  for (size_t c = 0; c < columns.size(); ++c) {
    gp << (c ? ", " : "") << "$bars using " << c + 2 << (c ? "" : ":xtic(1)") << " title "
       << gnuplotQuoted(columns[c].title);
  }
  gp << "\n";
  runGnuplot(gp.str(), pngPath);
}

}  // namespace cdl::bench
