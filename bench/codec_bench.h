#pragma once

#include <string>
#include <vector>

#include "bench/records.h"

namespace cdl::bench {

struct CodecBenchOptions {
  std::vector<std::string> sizes = {"1M", "16M"};
  std::vector<std::string> dists = {"gauss", "laplace"};
  std::vector<std::string> codecs = {
      "none",
      "fp16",
      "bf16",
      "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=none",
      "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans",
      "qsgd:bits=2,bucket=1024,rounding=stochastic,entropy=rans",
      "qsgd:bits=8,bucket=1024,rounding=stochastic,entropy=rans",
      "topk:density=0.01,entropy=rans",
  };
  RecordSink sink;  // Note [Bench records]; the plot: bits per element and throughput per row
};

// Runs the codec benchmark, printing a table (or JSON records) to stdout. Returns the exit status.
int runCodecBench(const CodecBenchOptions& opt);

}  // namespace cdl::bench
