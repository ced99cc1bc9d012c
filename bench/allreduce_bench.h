#pragma once

#include <string>
#include <vector>

#include "bench/records.h"

namespace cdl::bench {

struct AllreduceBenchOptions {
  std::string minBytes = "1K";
  std::string maxBytes = "256M";
  int factor = 4;  // sizes grow by this factor
  std::vector<std::string> codecs = {"none",
                                     "fp16",
                                     "qsgd:bits=8,entropy=rans",
                                     "qsgd:bits=4,entropy=rans",
                                     "qsgd:bits=2,entropy=rans",
                                     "topk:density=0.01",
                                     "powersgd:rank=4"};
  std::string segmentBytes = "4M";  // the pipeline segment of summable codecs; 0: none
  bool tcp = true;                  // also time the raw TCP ring (Note [Raw TCP ring]) on 2+ ranks
  int iters = 5;
  int warmup = 1;
  RecordSink sink;  // Note [Bench records]; the plot: busbw and the speed-up against size
};

// Runs under mpirun: times plain MPI_Allreduce on fp32 and cdl's compressed allreduce per codec
// for each size, in the same run, and prints (on rank 0) time, algbw, busbw, bytes on the wire
// and the speed-up over fp32. The row tcp_ring_raw is the ring's traffic over plain TCP sockets
// (Note [Raw TCP ring]): the most any fp32 allreduce can get from these links. PowerSGD sees the
// buffer as the squarest matrix it divides into and keeps its warm start across iterations, as in
// training. Returns the exit status.
int runAllreduceBench(int* argc, char*** argv, const AllreduceBenchOptions& opt);

}  // namespace cdl::bench
