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

// A link rate in tc's units ("100mbit", "1gbit", "800kbit", "5000bit", "12mbps"; k, m, g and t
// are powers of 1000, bps is bytes) in bytes per second. Throws cdl::Error otherwise.
double parseRate(const std::string& s);

// s as one CSV field (RFC 4180): quoted, quotes doubled, when it holds a comma, a quote or a line
// break (codec specs hold commas); as it is otherwise.
std::string csvField(const std::string& s);

}  // namespace cdl::bench
