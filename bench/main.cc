// cdl-bench: measures cdl's codecs (and, as they arrive, collectives and training throughput).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "bench/allreduce_bench.h"
#include "bench/codec_bench.h"
#include "comm/transport/mpi_communicator.h"
#include "kernels/base/error.h"

int main(int argc, char** argv) {
  CLI::App app{"cdl-bench: throughput and size of cdl's codecs and collectives"};
  app.require_subcommand(1);

  cdl::bench::CodecBenchOptions codec;
  CLI::App* codecCmd = app.add_subcommand(
      "codec",
      "Encode/decode GB/s on one core, bits per element and the entropy bound of each "
      "codec, with memcpy and zstd in the same run");
  codecCmd->add_option("--sizes", codec.sizes, "Element counts (e.g. 1M 16M)")->delimiter(',');
  codecCmd->add_option("--data", codec.dists, "Data: gauss, laplace")->delimiter(',');
  codecCmd->add_option("--codec", codec.codecs,
                       "Codec specs, e.g. qsgd:bits=4,entropy=rans (repeat the flag)");
  codecCmd->add_flag("--json", codec.json, "Print a JSON list of records instead of a table");
  codecCmd->add_option("--csv", codec.csv, "Also write the records as CSV to this file");
  codecCmd->add_option("--plot", codec.plot,
                       "Also draw bits per element and throughput per row into this PNG");

  cdl::bench::AllreduceBenchOptions allreduce;
  CLI::App* allreduceCmd = app.add_subcommand(
      "allreduce",
      "Under mpirun: plain MPI_Allreduce on fp32 against cdl's compressed allreduce "
      "for each codec and size (time, algbw, busbw, bytes on the wire, speed-up)");
  allreduceCmd->add_option("--min-bytes", allreduce.minBytes, "Smallest message (e.g. 1K)");
  allreduceCmd->add_option("--max-bytes", allreduce.maxBytes, "Largest message (e.g. 256M)");
  allreduceCmd->add_option("--factor", allreduce.factor, "Size multiplier between rows");
  allreduceCmd->add_option("--codec", allreduce.codecs, "Codec specs (repeat the flag)");
  allreduceCmd->add_option("--iters", allreduce.iters, "Timed iterations per row");
  allreduceCmd->add_option("--warmup", allreduce.warmup, "Untimed iterations per row");
  allreduceCmd->add_flag("--json", allreduce.json, "Print JSON records (rank 0)");

  CLI11_PARSE(app, argc, argv);
  try {
    if (codecCmd->parsed()) return cdl::bench::runCodecBench(codec);
    if (allreduceCmd->parsed()) return cdl::bench::runAllreduceBench(&argc, &argv, allreduce);
  } catch (const cdl::Error& e) {
    std::fprintf(stderr, "cdl-bench: %s\n", e.what());
    cdl::comm::abortMpi(2);  // peers waiting in a collective stop too
    return 2;
  }
  return 0;
}
