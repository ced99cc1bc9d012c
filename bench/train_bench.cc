// cdl-bench train: the training step of a config, split into its parts, per codec (Note
// [Training benchmark]).
#include "bench/train_bench.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/plot.h"
#include "bench/records.h"
#include "comm/reduce/scheme.h"
#if CDL_WITH_MPI
#include "comm/transport/mpi/mpi_communicator.h"
#endif
#include "core/config/config.h"
#include "core/run/metrics_log.h"
#include "core/train/trainer.h"
#include "kernels/base/error.h"
#include "kernels/base/knobs.h"

namespace cdl::bench {
namespace {

using nlohmann::json;

// The parts of a step as the table, the JSON and the CSV name them, in that order.
struct Part {
  const char* key;
  double core::StepTimes::*field;
};
constexpr Part kParts[] = {
    {"step", &core::StepTimes::step},           {"data", &core::StepTimes::data},
    {"compute", &core::StepTimes::compute},     {"wait", &core::StepTimes::wait},
    {"optimizer", &core::StepTimes::optimizer}, {"encode", &core::StepTimes::encode},
    {"comm", &core::StepTimes::comm},           {"decode", &core::StepTimes::decode}};
constexpr int kPartCount = static_cast<int>(sizeof(kParts) / sizeof(kParts[0]));

// The job's ranks: MPI_COMM_WORLD, or, built without MPI, this one process (Note [Training
// benchmark]).
std::shared_ptr<comm::Communicator> startWorld(int* argc, char*** argv) {
#if CDL_WITH_MPI
  comm::initMpi(argc, argv);
  return comm::makeMpiCommunicator();
#else
  (void)argc, (void)argv;
  return comm::makeLocalGroup(1)[0];
#endif
}

void endWorld() {
#if CDL_WITH_MPI
  comm::finalizeMpi();
#endif
}

// Collective: every rank's values, element by element, summed (max: the largest) in doubles.
std::vector<double> overRanks(comm::Communicator& world, const std::vector<double>& mine,
                              bool max) {
  const auto* p = reinterpret_cast<const uint8_t*>(mine.data());
  Bytes all;
  std::vector<size_t> sizes;
  world.allgatherv(Bytes(p, p + mine.size() * sizeof(double)), &all, &sizes)->wait();
  std::vector<double> out(mine.size(), max ? -1e300 : 0.0), theirs(mine.size());
  for (size_t r = 0, at = 0; r < sizes.size(); at += sizes[r], ++r) {
    CDL_CHECK(sizes[r] == mine.size() * sizeof(double), "train bench: rank ", r, " sent ", sizes[r],
              " bytes of figures");
    std::memcpy(theirs.data(), all.data() + at, sizes[r]);
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = max ? std::max(out[i], theirs[i]) : out[i] + theirs[i];
  }
  return out;
}

// A scratch folder made by rank 0, its path the same on every rank.
std::string sharedScratchFolder(comm::Communicator& world) {
  std::string path;
  if (world.rank() == 0) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/cdl-bench-train.XXXXXX";
    CDL_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot make a scratch folder like ", pattern);
    path = pattern;
  }
  Bytes b(path.begin(), path.end());
  world.broadcast(&b, 0)->wait();
  return std::string(b.begin(), b.end());
}

// One row: the config with the row's codec, as long as the warm-up and timed steps.
core::Config rowConfig(const TrainBenchOptions& opt, const std::string& codec, size_t row,
                       const std::string& runsDir) {
  std::vector<std::string> sets = opt.sets;
  // The run is cut at max_steps; enough epochs that the cut, not the epochs, ends it.
  sets.push_back("train.epochs=" + std::to_string(opt.warmup + opt.steps));
  sets.push_back("train.max_steps=" + std::to_string(opt.warmup + opt.steps));
  sets.push_back("comm.codec=" + codec);
  sets.push_back("log.runs_dir=" + runsDir);
  sets.push_back("name=row" + std::to_string(row));
  core::Config cfg = core::loadConfig(opt.config, sets);
  CDL_CHECK(cfg.model.split.stages == 1, opt.config, ": model.split.stages is ",
            cfg.model.split.stages, "; cdl-bench train runs unsplit models: set it to 1");
  return cfg;
}

// The mean seconds per timed step of each part on this rank.
std::vector<double> meanParts(const std::vector<core::StepTimes>& times, int64_t warmup) {
  std::vector<double> mean(kPartCount, 0.0);
  const size_t first = static_cast<size_t>(warmup);
  for (size_t s = first; s < times.size(); ++s) {
    for (int p = 0; p < kPartCount; ++p) mean[p] += times[s].*kParts[p].field;
  }
  for (double& m : mean) m /= static_cast<double>(times.size() - first);
  return mean;
}

void plotRows(const std::string& png, const std::string& title, const std::vector<json>& records) {
  std::vector<std::string> labels;
  std::vector<BarColumn> columns;
  for (const char* key : {"step", "compute", "wait", "optimizer", "encode", "comm", "decode"}) {
    columns.push_back({std::string(key) + " ms", {}});
  }
  for (const json& r : records) {
    labels.push_back(r["codec"].get<std::string>());
    for (BarColumn& c : columns) {
      c.values.push_back(r["ms"][c.title.substr(0, c.title.size() - 3)].get<double>());
    }
  }
  plotBars(png, title, labels, columns);
}

// One row: trains the row's config and measures its timed steps over every rank (collective).
json measureRow(const TrainBenchOptions& opt, size_t row, const std::string& runsDir,
                const std::shared_ptr<comm::Communicator>& world, int threads) {
  const int size = world->size();
  const core::Config cfg = rowConfig(opt, opt.codecs[row], row, runsDir);
  core::TrainOptions to;
  to.keepStepTimes = true;
  const core::TrainResult r = core::train(cfg, world, to);
  CDL_CHECK(static_cast<int64_t>(r.stepTimes.size()) == opt.warmup + opt.steps,
            "train bench: the run of ", opt.codecs[row], " took ", r.stepTimes.size(),
            " steps, not ", opt.warmup + opt.steps, " (is the train split that short?)");
  std::vector<double> mine = meanParts(r.stepTimes, opt.warmup);
  const double slowest = overRanks(*world, {mine[0]}, /*max=*/true)[0];
  mine.push_back(static_cast<double>(r.wireBytes));
  mine.push_back(static_cast<double>(r.fp32WireBytes));
  const std::vector<double> sums = overRanks(*world, mine, /*max=*/false);
  const std::vector<double> mean(sums.begin(), sums.begin() + kPartCount);
  const double wire = sums[kPartCount], fp32 = sums[kPartCount + 1];
  const int64_t globalBatch = cfg.train.batchSize * size;
  json ms = json::object();
  for (int p = 0; p < kPartCount; ++p) ms[kParts[p].key] = mean[p] / size * 1e3;
  const double steps = static_cast<double>(r.steps) * size;
  return {{"codec", comm::formatSchemeSpec(comm::parseSchemeSpec(opt.codecs[row]))},
          {"config", opt.config},
          {"ranks", size},
          {"threads", threads},
          {"batch_per_rank", cfg.train.batchSize},
          {"global_batch", globalBatch},
          {"steps", opt.steps},
          {"warmup", opt.warmup},
          {"samples_per_s", static_cast<double>(globalBatch) / slowest},
          {"ms", ms},
          {"wire_bytes_per_step", wire / steps},
          {"compression_ratio",
           core::compressionRatio(static_cast<uint64_t>(fp32), static_cast<uint64_t>(wire))}};
}

void printTable(const TrainBenchOptions& opt, const std::string& title,
                const std::vector<json>& records) {
  std::printf("# %s, batch %lld per rank, %lld timed steps after %lld\n", title.c_str(),
              static_cast<long long>(records[0]["batch_per_rank"].get<int64_t>()),
              static_cast<long long>(opt.steps), static_cast<long long>(opt.warmup));
  std::printf(
      "# ms per step, mean over steps and ranks; encode, comm and decode run on the "
      "communication thread, overlapping compute and wait\n");
  std::printf("%-30s %10s %8s", "codec", "samples/s", "speedup");
  for (const Part& p : kParts) std::printf(" %9s", p.key);
  std::printf(" %12s %7s\n", "wire B/step", "x fp32");
  for (const json& r : records) {
    std::printf("%-30s %10.1f %8.2f", r["codec"].get<std::string>().c_str(),
                r["samples_per_s"].get<double>(), r["speedup"].get<double>());
    for (const Part& p : kParts) std::printf(" %9.2f", r["ms"][p.key].get<double>());
    std::printf(" %12.0f %7.1f\n", r["wire_bytes_per_step"].get<double>(),
                r["compression_ratio"].get<double>());
  }
  std::fflush(stdout);
}

// The CSV's columns: the row, each part's ms, the bytes.
std::vector<CsvColumn> csvColumns() {
  std::vector<CsvColumn> columns = {
      {"codec"}, {"ranks"}, {"global_batch"}, {"samples_per_s"}, {"speedup"}};
  for (const Part& p : kParts)
    columns.push_back({std::string(p.key) + "_ms", std::string("ms.") + p.key});
  columns.push_back({"wire_bytes_per_step"});
  columns.push_back({"compression_ratio"});
  return columns;
}

}  // namespace

int runTrainBench(int* argc, char*** argv, const TrainBenchOptions& opt) {
  CDL_CHECK(opt.steps >= 1 && opt.steps <= 1000000 && opt.warmup >= 0 && opt.warmup <= 1000000,
            "train bench: need 1 <= --steps <= 1000000 and 0 <= --warmup <= 1000000");
  CDL_CHECK(!opt.codecs.empty(), "train bench: no --codec given");
  // Every spec and the config itself are checked before anything runs.
  for (const std::string& c : opt.codecs) comm::parseSchemeSpec(c);
  for (const std::string& c : opt.codecs) rowConfig(opt, c, 0, "runs");

  auto world = startWorld(argc, argv);
  const int rank = world->rank(), size = world->size();
  setProcessRank(rank);
  // The table and the JSON go to stdout; the runs' logs to stderr.
  auto logger = spdlog::stderr_color_mt("cdl-bench");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%H:%M:%S.%e] [rank " + std::to_string(rank) + "] [%l] %v");
  spdlog::set_level(spdlog::level::from_str(knobChoice(kKnobLogLevel)));

  const bool scratch = opt.runsDir.empty();
  const std::string runsDir = scratch ? sharedScratchFolder(*world) : opt.runsDir;
  const int threads = core::setIntraOpThreads(rowConfig(opt, opt.codecs[0], 0, runsDir), *world);
  std::vector<json> records;
  for (size_t row = 0; row < opt.codecs.size(); ++row) {
    records.push_back(measureRow(opt, row, runsDir, world, threads));
    records.back()["speedup"] = records.back()["samples_per_s"].get<double>() /
                                records.front()["samples_per_s"].get<double>();
  }
  world->barrier()->wait();
  if (scratch) {
    std::error_code ec;  // the ranks of one machine remove it together; any of them may finish
    std::filesystem::remove_all(runsDir, ec);
  }
  if (rank == 0) {
    const std::string title = "cdl-bench train: " + opt.config + ", " + std::to_string(size) +
                              " ranks x " + std::to_string(threads) + " threads";
    if (!opt.sink.json) printTable(opt, title, records);
    emitRecords(opt.sink, records, csvColumns(),
                [&](const std::string& png) { plotRows(png, title + ": ms per step", records); });
  }
  world.reset();
  endWorld();
  return 0;
}

}  // namespace cdl::bench
