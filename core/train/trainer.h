#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/config/config.h"
#include "core/data/data.h"
#include "core/models/models.h"
#include "core/pipeline/pipeline.h"
#include "core/run/metrics_log.h"

namespace cdl::core {

struct TrainOptions {
  bool resume = false;  // continue from this rank's newest checkpoint in the run folder
  // A restarted job: resume when every rank holds a checkpoint, else start afresh in the run
  // folder (restartResumes).
  bool restart = false;
  // > 0: stop once this many steps are done, after writing a checkpoint (an interruption that
  // --resume continues, e.g. at the end of a time-limited allocation).
  int64_t stopAfterSteps = 0;
  bool progressBar = false;    // rank 0 draws a bar on a terminal instead of periodic lines
  bool keepStepTimes = false;  // fill TrainResult::stepTimes (cdl-bench train)
  // The ranks agree after every step whether one was asked to stop (Note [Stop signals]), and
  // then stop there with a checkpoint; TrainResult::stopRanks says how many were.
  bool stopOnSignals = false;
};

struct DataSplits {
  ImageSet train, test;
};

// Collective over every rank of `world`: sets this process's intra-op threads to train.threads,
// or with 0 to defaultThreads (Note [Thread defaults]), keeps freed memory in the heap (Note
// [Training heap]), logs the choices on rank 0 and returns the threads.
int setIntraOpThreads(const Config& cfg, comm::Communicator& world);

// The config's data set (Fashion-MNIST from data.path, or the synthetic one it names).
DataSplits loadData(const Config& cfg);

// The options of the config's model for images of `set`.
ModelOptions modelOptions(const Config& cfg, const ImageSet& set);
// The config's model for images of `set`, initialized from the config's seed.
std::shared_ptr<Net> buildModel(const Config& cfg, const ImageSet& set);

// Note [Training loop]
// Data-parallel SGD on `comm`'s ranks: every rank builds the same model from the config's seed
// (and takes rank 0's parameters, so a stray difference cannot creep in), reads its disjoint shard
// of each epoch (shardIndices), and after every backward the Reducer averages the gradients with
// the configured codec before the optimizer steps, so the replicas stay bit-identical. Batch-norm
// running statistics are taken from rank 0 before each evaluation and checkpoint (as DDP's
// broadcast_buffers does). After each epoch the test split is evaluated in shards and the counts
// summed over ranks. Rank 0 writes <runs_dir>/<name>/{config.yaml, metrics.jsonl, summary.json};
// every rank writes its checkpoints to <runs_dir>/<name>/checkpoints (Note [Checkpoints]). A
// fresh run refuses a folder that already holds one (nothing written is overwritten); --resume
// continues it, and with the same config gives the same metrics as an uninterrupted run.
// train() is a sequence of parts, each testable alone: the run folder checks (run_folder.h), one
// step (train_step.h), the epoch end (epoch_end.h), the metrics log (metrics_log.h), and the
// replica's checkpoints (replica.h) over the atomic file writes of files.h.
TrainResult train(const Config& config, std::shared_ptr<comm::Communicator> comm,
                  const TrainOptions& options = {});
// The same on a grid of pipeline stages x data-parallel replicas (Note [Pipeline split]): each
// rank trains its stage of the model; an unsplit config runs on grid.world as above. A config
// whose model.split.stages differs from the grid's is a cdl::Error.
TrainResult train(const Config& config, const ProcessGrid& grid, const TrainOptions& options = {});

}  // namespace cdl::core
