#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cdl::bench {

// Seconds of the fastest of at least `minReps` runs of fn, repeating until `minSeconds` have
// passed in all: the best run is the least disturbed by other load on a shared machine.
double bestSeconds(const std::function<void()>& fn, int minReps = 3, double minSeconds = 0.25);

// Gradient-like test data. "gauss": a mixture of zero-mean Gaussians whose scale changes every
// 4096 elements (log-uniform over two decades, as across layers); "laplace": the same with
// Laplacian components, heavier-tailed like late-training gradients.
std::vector<float> gradientData(const std::string& dist, int64_t n, uint64_t seed);

// "1M" -> 1048576, "16M", "64K", "1000": sizes as users write them. Throws cdl::Error otherwise.
int64_t parseCount(const std::string& s);

// Renders a CSV (header line first) as a PNG bar chart of the named columns with gnuplot.
// Returns false, with a message on stderr, when gnuplot is missing or fails.
bool plotBars(const std::string& csvPath, const std::string& pngPath, const std::string& title,
              const std::string& labelColumn, const std::vector<std::string>& valueColumns);

}  // namespace cdl::bench
