#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace cdl::core {

// cdl-train's command line, defined once: cdl-train parses its arguments with it, and cdl-launch
// parses the arguments it forwards with it too, so both read every form CLI11 accepts
// (--set k=v, --set=k=v, --set k=v k2=v2) the same way and check the same config.
struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  bool resume = false;
  bool restart = false;
  int64_t stopAfter = 0;
};

inline void addTrainArgs(CLI::App& app, TrainArgs& a) {
  app.add_option("config", a.config, "Experiment config (YAML), e.g. configs/fmnist_cnn.yaml")
      ->required();
  app.add_option("--set", a.sets, "Override a config key, e.g. --set train.lr=0.05 (repeatable)");
  app.add_flag("--resume", a.resume, "Continue the run from its newest checkpoint");
  app.add_flag("--restart", a.restart,
               "Continue the run from the newest step every rank holds, or start it afresh in "
               "its folder when there is none (what cdl-launch --max-restarts passes)");
  app.add_option("--stop-after", a.stopAfter,
                 "Stop after this many steps, with a checkpoint (continue with --resume)");
}

}  // namespace cdl::core
