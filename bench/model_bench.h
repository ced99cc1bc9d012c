#pragma once

#include <string>
#include <vector>

namespace cdl::bench {

struct ModelBenchOptions {
  std::string records;  // a cdl-bench allreduce --json file
  std::string link;     // the link rate the records were measured on (tc units: 1gbit), if known
  double latencyUs = -1.0;    // >= 0: projections take this latency instead of the fitted one
  std::string bytes = "64M";  // the allreduce projected
  std::vector<int> ranks = {16, 64, 256, 1024};
  std::vector<double> gbits = {10, 25, 100, 400};
  bool json = false;
};

// Fits Note [Cost model] to the records and prints the fit beside each measured row, then the
// projected time of every scheme for each rank count and link rate. Returns the exit status.
int runModelBench(const ModelBenchOptions& opt);

}  // namespace cdl::bench
