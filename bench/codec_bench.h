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
  // cpu: the CPU codecs on one core; cuda: the device codecs (comm/codec/cuda) on device buffers.
  std::string device = "cpu";
  RecordSink sink;  // Note [Bench records]; the plot: bits per element and throughput per row
};

// Runs the codec benchmark, printing a table (or JSON records) to stdout. Returns the exit status.
int runCodecBench(const CodecBenchOptions& opt);

// The --device cuda form (bench/codec_bench_cuda.cc, in builds with the CUDA path): GB/s of the
// device codecs against a device-to-device memcpy, and whether their payloads equal the CPU's.
// Exits 1 with one line on stderr where no GPU is visible.
int runCodecBenchCuda(const CodecBenchOptions& opt);

}  // namespace cdl::bench
