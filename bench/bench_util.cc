#include "bench/bench_util.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <random>
#include <utility>

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

double parseRate(const std::string& s) {
  size_t at = 0;
  while (at < s.size() && (std::isdigit(static_cast<unsigned char>(s[at])) || s[at] == '.')) ++at;
  const std::string digits = s.substr(0, at);
  std::string unit = s.substr(at);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // Bits per second of one unit, as tc reads them (bps and its multiples are bytes).
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1.0},      {"bit", 1.0}, {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9},
      {"tbit", 1e12}, {"bps", 8.0}, {"kbps", 8e3}, {"mbps", 8e6}, {"gbps", 8e9}};
  double mult = 0.0;
  for (const auto& [name, bits] : kUnits) {
    if (unit == name) mult = bits;
  }
  char* end = nullptr;
  const double v = std::strtod(digits.c_str(), &end);
  CDL_CHECK(!digits.empty() && *end == '\0' && mult > 0.0 && v > 0.0 && std::isfinite(v * mult),
            "bad link rate '", s, "' (expected tc's units, e.g. 100mbit or 1gbit)");
  return v * mult / 8.0;
}

std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace cdl::bench
