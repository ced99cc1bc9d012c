#pragma once

#include <cstdint>
#include <vector>

namespace cdl::comm {

// One compression candidate of one layer (a bit width, density or rank).
struct RateCandidate {
  double error = 0;    // additive cost (||g - C_k(g)|| or its square; the caller decides), >= 0
  int64_t bytes = 0;   // encoded size, >= 0
  bool valid = true;   // invalid candidates are never chosen and their error and bytes are ignored
  double seconds = 0;  // predicted time per step (planRatesForTime), >= 0
};

struct RatePlannerOptions {
  double alpha = 1.0;   // budget B = alpha * (total error of the defaults); > 0
  int buckets = 10000;  // D, the number of error buckets of the knapsack; in [1, 10^7]
};

struct RatePlan {
  bool feasible = false;     // false: no plan fits B and choice holds the least-error candidates
  std::vector<int> choice;   // per layer, an index into that layer's candidates
  double error = 0;          // real total error of choice
  double budget = 0;         // B (planRatesForTime: the time budget, seconds)
  double seconds = 0;        // total predicted time of choice
  int64_t bytes = 0;         // total size of choice
  int64_t defaultBytes = 0;  // total size of the all-defaults plan
  double defaultError = 0;   // total error of the all-defaults plan
};

// Note [Rate planner]
// L-GreCo's layerwise rate choice: layer l has candidates k with error e[l][k] and size s[l][k];
// minimize the total size subject to total error <= B = alpha * sum_l e[l][d_l] (d = defaults).
//
// Discretization: scale = D / B and e'[l][k] = ceil(e[l][k] * scale) (with B == 0: e' = 0 where
// e == 0, else the candidate is unusable), capacity D. The knapsack
//   DP[l][b] = min over valid k with e'[l][k] <= b of DP[l-1][b - e'[l][k]] + s[l][k],
//   DP[-1][b] = 0,
// is solved for b = 0..D and backtracked from DP[L-1][D]. Since ceil rounds up, every DP plan's
// real error is <= B. When alpha >= 1 the all-defaults plan is within B too, and the result is
// whichever of (DP's best, all-defaults) has fewer bytes; ties go to less real error, then DP's.
// So at alpha = 1 the plan is never larger than uniform and never exceeds uniform's error.
//
// Ties (part of the DP, so the plan is a pure function of the inputs): the DP minimizes
// (total size, total discrete error) lexicographically; among plans equal in both it takes the
// smallest index in the last layer, then in the layer before, and so on (reverse lexicographic).
//
// A smaller alpha is never looser: its scale is no smaller, so every e' is no smaller and every
// plan that fits it also fits a larger alpha (the plan's bytes are monotone in alpha exactly).
//
// Cost: time O(L * D * K); memory L * (D + 1) bytes of choices (uint8, so K_l <= 255) plus two
// rows of int64 sizes and two rows of int32 discrete errors.
//
// Plans the candidate per layer (Note [Rate planner]). Throws cdl::Error on bad input: alpha not
// positive and finite, buckets outside [1, 10^7], layers and defaults of different lengths, a layer
// with no (valid) candidates or more than 255, a default out of range or invalid, a valid error
// negative or not finite, valid bytes negative, or sizes whose sum could exceed INT64_MAX / 2.
// An infeasible budget is not an error: the plan has feasible = false.
RatePlan planRates(const std::vector<std::vector<RateCandidate>>& layers,
                   const std::vector<int>& defaults, const RatePlannerOptions& options);

// Note [Time budget]
// The dual knapsack, for a budget of time (Note [Adaptive rates]): minimize the total error
// subject to the total predicted seconds <= budgetSeconds. The same dynamic program with the
// roles swapped: seconds are discretized (ceil(t * D / T), so a plan that fits never exceeds T
// in real seconds), the error is minimized, and ties go to less discrete time, then to the
// smaller index in the last layer, and so on. A budget no plan fits is not an error: the plan has
// feasible = false and takes per layer the candidate of least time (then fewer bytes). The
// defaults play no part but in the plan's defaultError and defaultBytes. Bad input as planRates,
// plus a budget or a valid candidate's seconds negative or not finite.
RatePlan planRatesForTime(const std::vector<std::vector<RateCandidate>>& layers,
                          const std::vector<int>& defaults, double budgetSeconds, int buckets);

}  // namespace cdl::comm
