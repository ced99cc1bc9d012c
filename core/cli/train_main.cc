// cdl-train: the worker. Started once per rank (by mpirun, cdl-launch or SLURM's srun); trains the
// experiment of one config file (Note [Training loop]).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "comm/transport/communicator.h"
#if CDL_WITH_MPI
#include "comm/transport/mpi/mpi_communicator.h"
#include "comm/transport/tcp/tcp_channel.h"
#endif
#include "core/cli/train_args.h"
#include "core/config/config.h"
#include "core/run/files.h"
#include "core/run/metrics_log.h"
#include "core/run/stop_signals.h"
#include "core/train/torch_info.h"
#include "core/train/trainer.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/base/knobs.h"

namespace {

#if CDL_WITH_MPI
// The job's ranks: MPI_COMM_WORLD.
std::shared_ptr<cdl::comm::Communicator> startWorld(int* argc, char*** argv) {
  cdl::core::setLinkResetFault(&cdl::comm::resetTcpChannels);  // Note [Fault points]
  cdl::comm::initMpi(argc, argv);
  return cdl::comm::makeMpiCommunicator();
}
void endWorld() { cdl::comm::finalizeMpi(); }
// The other ranks may be waiting in a collective: take the whole job down.
void abortWorld(int status) { cdl::comm::abortMpi(status); }

// The grid of the config's stages over MPI_COMM_WORLD (Note [Pipeline split]): the data-parallel
// group of each stage and the pipeline group of each replica, split from the world.
cdl::core::ProcessGrid makeGrid(std::shared_ptr<cdl::comm::Communicator> world,
                                const cdl::core::Config& config) {
  const int stages = static_cast<int>(config.model.split.stages);
  // The ranks' configs are compared by train(); a rank count the stages do not divide fails here,
  // before the split.
  cdl::core::checkGridSize(world->size(), stages);
  if (stages == 1) return cdl::core::unsplitGrid(world);
  cdl::core::ProcessGrid g;
  g.world = world;
  g.stages = stages;
  const auto sub = [&](int color) {
    MPI_Comm c = MPI_COMM_NULL;
    CDL_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, world->rank(), &c));
    auto comm = cdl::comm::makeMpiCommunicator(c);
    MPI_Comm_free(&c);
    return comm;
  };
  g.data = sub(g.stage());
  g.pipe = sub(g.replica());
  return g;
}
#else
// Built without MPI (CDL_WITH_MPI=OFF): one rank. Started as one of several by a launcher that
// says so, it refuses rather than train alone beside the others.
std::shared_ptr<cdl::comm::Communicator> startWorld(int*, char***) {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "WORLD_SIZE"}) {
    const char* n = std::getenv(v);
    CDL_CHECK(n == nullptr || std::string(n) == "1" || std::string(n).empty(),
              "cdl-train was built without MPI (CDL_WITH_MPI=OFF) and runs one rank, but ", v,
              " is ", n, ": build with MPI for several ranks");
  }
  return cdl::comm::makeLocalGroup(1)[0];
}
void endWorld() {}
void abortWorld(int) {}

cdl::core::ProcessGrid makeGrid(std::shared_ptr<cdl::comm::Communicator> world,
                                const cdl::core::Config& config) {
  cdl::core::checkGridSize(world->size(), config.model.split.stages);
  return cdl::core::unsplitGrid(world);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cdl-train: data-parallel training with compressed gradients"};
  cdl::core::TrainArgs args;
  cdl::core::addTrainArgs(app, args);
  app.set_version_flag("--version", [] {
    return std::string("cdl-train ") + CDL_VERSION + ", " + cdl::core::torchInfo();
  });
  CLI11_PARSE(app, argc, argv);
  cdl::core::TrainOptions options;
  options.resume = args.resume;
  options.restart = args.restart;
  options.stopAfterSteps = args.stopAfter;
  options.stopOnSignals = true;  // Note [Stop signals]
  cdl::core::installStopSignals();
  const std::string& configPath = args.config;
  const std::vector<std::string>& sets = args.sets;

  int rank = 0;
  int status = 0;
  try {
    auto comm = startWorld(&argc, &argv);
    rank = comm->rank();
    cdl::setProcessRank(rank);
    spdlog::set_pattern("[%H:%M:%S.%e] [rank " + std::to_string(rank) + "] [%l] %v");
    spdlog::set_level(spdlog::level::from_str(cdl::knobChoice(cdl::kKnobLogLevel)));

    const cdl::core::Config config = cdl::core::loadConfig(configPath, sets);
    if (rank == 0) spdlog::info("{}", cdl::core::torchInfo());
    cdl::core::setIntraOpThreads(config, *comm);  // Note [Thread defaults]
    options.progressBar = rank == 0 && ::isatty(STDERR_FILENO);

    const cdl::core::TrainResult r = cdl::core::train(config, makeGrid(comm, config), options);
    if (rank == 0) {
      if (r.finished) {
        spdlog::info(
            "done: test accuracy {:.2f}% after {} epochs ({} steps) in {:.1f} s; {:.1f} MB "
            "sent per rank, {:.1f}x less than fp32; {}/summary.json",
            100.0 * r.testAccuracy, r.epochs, r.steps, r.wallSeconds, r.wireBytes / 1e6,
            cdl::core::compressionRatio(r.fp32WireBytes, r.wireBytes), r.runDir);
        if (r.cdl) {
          spdlog::info("coded model: {} bytes, {:.3f} bits per quantized weight", r.modelCodedBytes,
                       r.modelBitsPerWeight);
        }
      } else if (r.stopRanks > 0) {
        spdlog::warn(
            "stopped at step {} by a signal to {} rank(s), with a checkpoint; continue with "
            "--resume (exit status {}: stopped, resumable)",
            r.steps, r.stopRanks, cdl::core::kExitResumable);
      } else {
        spdlog::info("stopped at step {} with a checkpoint; continue with --resume", r.steps);
      }
    }
    // A stop voted at the run's last step leaves nothing to resume: the run finished.
    if (r.stopRanks > 0 && !r.finished) status = cdl::core::kExitResumable;
    comm.reset();
    endWorld();
  } catch (const cdl::Error& e) {
    std::fprintf(stderr, "cdl-train: %s\n", e.what());  // the message names the rank
    abortWorld(2);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cdl-train: [rank %d] %s\n", rank, e.what());
    abortWorld(2);
    return 2;
  }
  return status;
}
