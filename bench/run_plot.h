#pragma once

#include <string>
#include <vector>

#include "bench/plot.h"

namespace cdl::bench {

// What cdl-plot draws of one run folder's metrics.jsonl (Note [Metrics log]).
struct RunCurves {
  std::string name;  // the folder's name
  Series trainLossByStep, trainLossByWall, wireMbByStep;
  Series testAccuracyByStep, testAccuracyByWall, testLossByStep;
};

// Reads <runDir>/metrics.jsonl. Throws a cdl::Error naming the folder when it has no metrics, the
// file and line of a record that is not a JSON object, and the file when it holds no step record.
RunCurves readRunCurves(const std::string& runDir);

// Draws the runs side by side into pngPath: train loss and test accuracy against step and against
// wall seconds, wire MB per step and test loss against step (Note [Plots]). Throws naming a run
// that cannot be read, or an output folder that does not exist.
void plotRuns(const std::vector<std::string>& runDirs, const std::string& pngPath,
              const std::string& title);

// Note [Rate plot]
// Accuracy against model size: a JSON-lines file of points, each {"method": M, "bits_per_weight":
// B, "test_accuracy": A} (more keys are ignored), drawn as one line per method in the order the
// methods first appear, each line's points in order of bits (bench/rate_sweep.sh writes one from
// CDL, R-CDL, LSQ and post-training quantization runs). Throws naming the file, and the line of a
// point that is not such an object; a file without points is an error too.
void plotRatePoints(const std::string& pointsFile, const std::string& pngPath,
                    const std::string& title);

}  // namespace cdl::bench
