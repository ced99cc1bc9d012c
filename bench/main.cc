// cdl-bench: measures cdl's codecs, its collectives and its training step.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "bench/codec_bench.h"
#include "bench/model_bench.h"
#include "bench/train_bench.h"
#include "comm/transport/communicator.h"
#if CDL_WITH_MPI
#include "bench/allreduce_bench.h"
#include "comm/transport/mpi/mpi_communicator.h"
#endif

namespace {

using namespace cdl::bench;

// --json, --csv and --plot of a subcommand (Note [Bench records]).
void addSinkOptions(CLI::App* cmd, RecordSink& sink, const std::string& jsonHelp,
                    const std::string& plotHelp) {
  cmd->add_flag("--json", sink.json, jsonHelp);
  cmd->add_option("--csv", sink.csv, "Also write the rows as CSV to this file");
  cmd->add_option("--plot", sink.plot, plotHelp);
}

CLI::App* addCodecCommand(CLI::App& app, CodecBenchOptions& codec) {
  CLI::App* cmd = app.add_subcommand(
      "codec",
      "Encode/decode GB/s on one core, bits per element and the entropy bound of each "
      "codec, with memcpy and zstd in the same run");
  cmd->add_option("--sizes", codec.sizes, "Element counts (e.g. 1M 16M)")->delimiter(',');
  cmd->add_option("--data", codec.dists, "Data: gauss, laplace")->delimiter(',');
  cmd->add_option("--codec", codec.codecs,
                  "Codec specs, e.g. qsgd:bits=4,entropy=rans (repeat the flag)");
  cmd->add_option("--device", codec.device,
                  "cpu: one core; cuda: the device codecs on device buffers, against a device "
                  "memcpy of the same bytes")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  addSinkOptions(cmd, codec.sink, "Print a JSON list of records instead of a table",
                 "Also draw bits per element and throughput per row into this PNG");
  return cmd;
}

#if CDL_WITH_MPI
CLI::App* addAllreduceCommand(CLI::App& app, AllreduceBenchOptions& allreduce) {
  CLI::App* cmd = app.add_subcommand(
      "allreduce",
      "Under mpirun: plain MPI_Allreduce on fp32 against cdl's compressed allreduce "
      "for each codec and size (time, algbw, busbw, bytes on the wire, speed-up)");
  cmd->add_option("--min-bytes", allreduce.minBytes, "Smallest message (e.g. 1K)");
  cmd->add_option("--max-bytes", allreduce.maxBytes, "Largest message (e.g. 256M)");
  cmd->add_option("--factor", allreduce.factor, "Size multiplier between rows");
  cmd->add_option("--codec", allreduce.codecs, "Codec specs (repeat the flag)");
  cmd->add_option("--segment-bytes", allreduce.segmentBytes,
                  "Pipeline segment of summable codecs (e.g. 4M; 0: unsegmented)");
  cmd->add_flag("--tcp,!--no-tcp", allreduce.tcp,
                "Time the ring's traffic over plain TCP sockets, the links' limit "
                "(row tcp_ring_raw; default on)");
  cmd->add_option("--iters", allreduce.iters, "Timed iterations per row");
  cmd->add_option("--warmup", allreduce.warmup, "Untimed iterations per row");
  addSinkOptions(cmd, allreduce.sink, "Print JSON records (rank 0)",
                 "Also draw busbw and the speed-up against size into this PNG");
  return cmd;
}

#endif

CLI::App* addTrainCommand(CLI::App& app, TrainBenchOptions& train) {
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Under mpirun (or one rank): samples/s of a config's training per codec, each step split "
      "into data, "
      "forward+backward, communication wait, optimizer, encode, comm and decode, with the "
      "bytes on the wire");
  cmd->add_option("config", train.config, "Experiment config (YAML)")->required();
  cmd->add_option("--codec", train.codecs,
                  "Scheme specs, one row each (repeat the flag; default none, 8- and 4-bit "
                  "qsgd with rANS, powersgd:rank=4)");
  cmd->add_option("--set", train.sets, "Override a config key for every row: key=value");
  cmd->add_option("--steps", train.steps, "Timed steps per row");
  cmd->add_option("--warmup", train.warmup, "Untimed steps before them");
  cmd->add_option("--runs-dir", train.runsDir,
                  "Keep the rows' run folders here (default: a scratch folder, removed)");
  addSinkOptions(cmd, train.sink, "Print JSON records (rank 0)",
                 "Also draw each row's step split into this PNG");
  return cmd;
}

CLI::App* addModelCommand(CLI::App& app, ModelBenchOptions& model) {
  CLI::App* cmd = app.add_subcommand(
      "model",
      "The allreduce cost model (latency, bandwidth and codec terms per algorithm) fitted to "
      "cdl-bench allreduce --json records, beside them, and projected to more ranks and faster "
      "links");
  cmd->add_option("records", model.records, "A cdl-bench allreduce --json file")->required();
  cmd->add_option("--link", model.link,
                  "The link rate of the records (e.g. 1gbit): projections scale by the "
                  "efficiency the fit found on it");
  cmd->add_option("--latency-us", model.latencyUs,
                  "Latency per message for the projections (default: the fitted one)");
  cmd->add_option("--bytes", model.bytes, "The allreduce projected (e.g. 64M)");
  cmd->add_option("--ranks", model.ranks, "Rank counts projected")->delimiter(',');
  cmd->add_option("--gbits", model.gbits, "Link rates projected, Gbit/s")->delimiter(',');
  cmd->add_flag("--json", model.json, "Print the fit and the projections as JSON");
  return cmd;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cdl-bench: throughput and size of cdl's codecs, collectives and training"};
  app.require_subcommand(1);
  CodecBenchOptions codec;
  ModelBenchOptions model;
  CLI::App* codecCmd = addCodecCommand(app, codec);
  CLI::App* modelCmd = addModelCommand(app, model);
  TrainBenchOptions train;
  CLI::App* trainCmd = addTrainCommand(app, train);
#if CDL_WITH_MPI
  AllreduceBenchOptions allreduce;
  CLI::App* allreduceCmd = addAllreduceCommand(app, allreduce);
#endif
  CLI11_PARSE(app, argc, argv);
  try {
    if (codecCmd->parsed()) return runCodecBench(codec);
    if (modelCmd->parsed()) return runModelBench(model);
    if (trainCmd->parsed()) return runTrainBench(&argc, &argv, train);
#if CDL_WITH_MPI
    if (allreduceCmd->parsed()) return runAllreduceBench(&argc, &argv, allreduce);
#endif
  } catch (const std::exception& e) {  // cdl::Error, or LibTorch's from a training row
    std::fprintf(stderr, "cdl-bench: %s\n", e.what());
#if CDL_WITH_MPI
    cdl::comm::abortMpi(2);  // peers waiting in a collective stop too
#endif
    return 2;
  }
  return 0;
}
