#include "bench/bench_util.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "kernels/base/error.h"

namespace cdl::bench {

double bestSeconds(const std::function<void()>& fn, int minReps, double minSeconds) {
  using Clock = std::chrono::steady_clock;
  double best = 1e300, total = 0.0;
  for (int rep = 0; rep < minReps || total < minSeconds; ++rep) {
    const auto t0 = Clock::now();
    fn();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}

std::vector<float> gradientData(const std::string& dist, int64_t n, uint64_t seed) {
  CDL_CHECK(dist == "gauss" || dist == "laplace", "unknown data distribution '", dist,
            "' (expected gauss or laplace)");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> logScale(-4.0, -2.0);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::exponential_distribution<float> expo(1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  constexpr int64_t kSegment = 4096;
  for (int64_t s = 0; s < n; s += kSegment) {
    const float scale = static_cast<float>(std::pow(10.0, logScale(rng)));
    const int64_t end = std::min(n, s + kSegment);
    for (int64_t i = s; i < end; ++i) {
      if (dist == "gauss") {
        // Two components: most weights see small gradients, a tenth see four times larger ones.
        x[i] = normal(rng) * scale * ((rng() % 10 == 0) ? 4.0f : 1.0f);
      } else {
        x[i] = expo(rng) * scale * ((rng() & 1) ? 1.0f : -1.0f);
      }
    }
  }
  return x;
}

int64_t parseCount(const std::string& s) {
  CDL_CHECK(!s.empty(), "empty size");
  int64_t mult = 1;
  std::string digits = s;
  const char last = s.back();
  if (last == 'K' || last == 'k') mult = int64_t{1} << 10;
  if (last == 'M' || last == 'm') mult = int64_t{1} << 20;
  if (last == 'G' || last == 'g') mult = int64_t{1} << 30;
  if (mult != 1) digits.pop_back();
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, 10);
  CDL_CHECK(!digits.empty() && *end == '\0' && v >= 0, "bad size '", s,
            "' (expected a count such as 1000, 64K or 16M)");
  return v * mult;
}

bool plotBars(const std::string& csvPath, const std::string& pngPath, const std::string& title,
              const std::string& labelColumn, const std::vector<std::string>& valueColumns) {
  const std::string script = pngPath + ".gp";
  {
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1200,700 noenhanced\n"
       << "set output '" << pngPath << "'\n"
       << "set datafile separator ','\n"
       << "set title '" << title << "'\n"
       << "set style data histograms\nset style histogram clustered gap 1\n"
       << "set style fill solid 0.8 border -1\nset key outside right top\n"
       << "set xtics rotate by -35\nset grid ytics\n"
       << "plot ";
    for (size_t i = 0; i < valueColumns.size(); ++i) {
      gp << (i ? ", " : "") << "'" << csvPath << "' using '" << valueColumns[i]
         << "':xtic(stringcolumn('" << labelColumn << "')) title '" << valueColumns[i] << "'";
    }
    gp << "\n";
  }
  const std::string cmd = "gnuplot '" + script + "' 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) {
    std::fprintf(stderr, "plot: cannot run gnuplot\n");
    return false;
  }
  char buf[512];
  std::string out;
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int rc = pclose(pipe);
  std::remove(script.c_str());
  if (rc != 0) {
    std::fprintf(stderr, "plot: gnuplot failed (%d): %s\n", rc, out.c_str());
    return false;
  }
  return true;
}

}  // namespace cdl::bench
