#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/records.h"

namespace cdl::bench {

struct TrainBenchOptions {
  std::string config;  // the experiment (YAML) whose training step is measured
  std::vector<std::string> codecs = {"none", "qsgd:bits=8,entropy=rans", "qsgd:bits=4,entropy=rans",
                                     "powersgd:rank=4"};
  std::vector<std::string> sets;  // key=value overrides for every row, as cdl-train's --set
  int64_t steps = 50;             // timed steps per codec
  int64_t warmup = 5;             // untimed steps before them
  std::string runsDir;            // where the rows' runs go; empty: a scratch folder, removed
  RecordSink sink;                // Note [Bench records]; the plot: the step split per row
};

// Note [Training benchmark]
// cdl-bench train runs under mpirun (cdl-launch --bench, locally, on the emulated cluster or
// under SLURM), or, built without MPI, as one rank (a GPU machine without MPI: train.device
// through --set), and trains the config for warmup + steps steps once per codec (comm.codec set to
// the row's scheme spec, every other key as the config and --set give it), through the very
// train() that cdl-train runs, with the same thread defaults. Each row reports the samples per
// second of the timed steps (the global batch over the slowest rank's mean step), the speed-up
// over the first row, the step split of Note [Step times] (the mean milliseconds per step over
// the timed steps and the ranks), and the gradient bytes each rank sent per step with the
// compression against fp32 ring allreduces. The runs write their folders under a scratch folder
// (--runs-dir keeps them). Returns the exit status.
int runTrainBench(int* argc, char*** argv, const TrainBenchOptions& opt);

}  // namespace cdl::bench
