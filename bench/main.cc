// cdl-bench: measures cdl's codecs, its collectives and its training step.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "bench/allreduce_bench.h"
#include "bench/codec_bench.h"
#include "bench/model_bench.h"
#include "bench/train_bench.h"
#include "comm/transport/mpi_communicator.h"
#include "kernels/base/error.h"

int main(int argc, char** argv) {
  CLI::App app{"cdl-bench: throughput and size of cdl's codecs, collectives and training"};
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
  allreduceCmd->add_option("--segment-bytes", allreduce.segmentBytes,
                           "Pipeline segment of summable codecs (e.g. 4M; 0: unsegmented)");
  allreduceCmd->add_flag("--tcp,!--no-tcp", allreduce.tcp,
                         "Time the ring's traffic over plain TCP sockets, the links' limit "
                         "(row tcp_ring_raw; default on)");
  allreduceCmd->add_option("--iters", allreduce.iters, "Timed iterations per row");
  allreduceCmd->add_option("--warmup", allreduce.warmup, "Untimed iterations per row");
  allreduceCmd->add_flag("--json", allreduce.json, "Print JSON records (rank 0)");
  allreduceCmd->add_option("--csv", allreduce.csv, "Also write the rows as CSV to this file");
  allreduceCmd->add_option("--plot", allreduce.plot,
                           "Also draw busbw and the speed-up against size into this PNG");

  cdl::bench::TrainBenchOptions train;
  CLI::App* trainCmd = app.add_subcommand(
      "train",
      "Under mpirun: samples/s of a config's training per codec, each step split into data, "
      "forward+backward, communication wait, optimizer, encode, comm and decode, with the "
      "bytes on the wire");
  trainCmd->add_option("config", train.config, "Experiment config (YAML)")->required();
  trainCmd->add_option("--codec", train.codecs,
                       "Scheme specs, one row each (repeat the flag; default none, 8- and 4-bit "
                       "qsgd with rANS, powersgd:rank=4)");
  trainCmd->add_option("--set", train.sets, "Override a config key for every row: key=value");
  trainCmd->add_option("--steps", train.steps, "Timed steps per row");
  trainCmd->add_option("--warmup", train.warmup, "Untimed steps before them");
  trainCmd->add_option("--runs-dir", train.runsDir,
                       "Keep the rows' run folders here (default: a scratch folder, removed)");
  trainCmd->add_flag("--json", train.json, "Print JSON records (rank 0)");
  trainCmd->add_option("--csv", train.csv, "Also write the rows as CSV to this file");
  trainCmd->add_option("--plot", train.plot, "Also draw each row's step split into this PNG");

  cdl::bench::ModelBenchOptions model;
  CLI::App* modelCmd = app.add_subcommand(
      "model",
      "The allreduce cost model (latency, bandwidth and codec terms per algorithm) fitted to "
      "cdl-bench allreduce --json records, beside them, and projected to more ranks and faster "
      "links");
  modelCmd->add_option("records", model.records, "A cdl-bench allreduce --json file")->required();
  modelCmd->add_option("--link", model.link,
                       "The link rate of the records (e.g. 1gbit): projections scale by the "
                       "efficiency the fit found on it");
  modelCmd->add_option("--latency-us", model.latencyUs,
                       "Latency per message for the projections (default: the fitted one)");
  modelCmd->add_option("--bytes", model.bytes, "The allreduce projected (e.g. 64M)");
  modelCmd->add_option("--ranks", model.ranks, "Rank counts projected")->delimiter(',');
  modelCmd->add_option("--gbits", model.gbits, "Link rates projected, Gbit/s")->delimiter(',');
  modelCmd->add_flag("--json", model.json, "Print the fit and the projections as JSON");

  CLI11_PARSE(app, argc, argv);
  try {
    if (codecCmd->parsed()) return cdl::bench::runCodecBench(codec);
    if (allreduceCmd->parsed()) return cdl::bench::runAllreduceBench(&argc, &argv, allreduce);
    if (trainCmd->parsed()) return cdl::bench::runTrainBench(&argc, &argv, train);
    if (modelCmd->parsed()) return cdl::bench::runModelBench(model);
  } catch (const cdl::Error& e) {
    std::fprintf(stderr, "cdl-bench: %s\n", e.what());
    cdl::comm::abortMpi(2);  // peers waiting in a collective stop too
    return 2;
  } catch (const std::exception& e) {  // LibTorch's, from a training row
    std::fprintf(stderr, "cdl-bench: %s\n", e.what());
    cdl::comm::abortMpi(2);
    return 2;
  }
  return 0;
}
