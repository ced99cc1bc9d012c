#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cdl::bench {

// Note [Cost model]
// cdl-bench model projects an allreduce of n bytes of fp32 gradients past one machine from the
// rows of a `cdl-bench allreduce --json` run on W0 ranks. A scheme's time on W ranks over links of
// B bytes/s, with a latency of alpha per message, is
//   T(n, W) = steps(W) alpha + wire(n, W) / B + e n fe(W) + d n fd(W)
// where, by how the scheme moves its bytes (Note [Compressed allreduce], Note [PowerSGD
// allreduce]):
//   ring       fp32 (MPI_Allreduce, codec none): steps 2(W-1), wire 2(W-1)/W n, no codec terms;
//   summable   quantizers, scatter-reduce + allgather: steps 2(W-1), wire c 2(W-1)/W n, each rank
//              encodes its buffer and its chunk's sum, fe = 1 + 1/W, and decodes W-1 chunks sent
//              to it and the W gathered ones, fd = 2 - 1/W;
//   gather     top-k, allgather of one payload a rank: steps W-1, wire c (W-1) n, fe = 1, fd = W;
//   powersgd   two fp32 ring allreduces of the factors: steps 4(W-1), wire c 2(W-1)/W n, fe = fd =
//   1;
// with c the scheme's wire bytes per fp32 byte and e, d its encode and decode seconds per byte,
// all measured: c from each row's wire bytes, e and d from its encode and decode times (summed
// over the rows of the scheme, through the origin). alpha and B are one least-squares fit of the
// ring rows of MPI_Allreduce (T against steps and wire). Beside each measured row the fit gives
// its modelled time; the projection then takes the link rate it is asked for, scaled by the
// efficiency the fit found against the measured link (--link), and the fitted alpha (or
// --latency-us). It models the collective only: a step's time is its compute plus whatever of the
// allreduce backward does not hide, so an allreduce projected to cost less than the compute can
// only be hidden.

// How a scheme moves its bytes.
enum class CostKind { kRing, kSummable, kGather, kPowerSgd };

// One measured row of cdl-bench allreduce.
struct MeasuredRow {
  std::string codec;  // "mpi_allreduce_fp32" or a scheme spec
  double bytes = 0.0;
  int ranks = 0;
  double seconds = 0.0;
  double wireBytes = 0.0;  // what this rank sent
  double encodeSeconds = 0.0, decodeSeconds = 0.0;
};

// What the fit knows of one scheme.
struct SchemeCost {
  std::string codec;
  CostKind kind = CostKind::kRing;
  double wirePerByte = 1.0;                         // c
  double encodePerByte = 0.0, decodePerByte = 0.0;  // e, d in seconds
};

struct CostFit {
  double alpha = 0.0;               // seconds per message
  double bandwidth = 0.0;           // bytes per second
  std::vector<SchemeCost> schemes;  // in the order the rows first name them
};

// The rows of a cdl-bench allreduce JSON document; a document of another shape is a cdl::Error
// naming the record and key.
std::vector<MeasuredRow> measuredRows(const nlohmann::json& doc);
// The kind of a row's codec; an unknown spec is a cdl::Error naming it.
CostKind costKind(const std::string& codec);
// Fits alpha, B and every scheme's terms (Note [Cost model]). Rows of more than one rank count, no
// MPI_Allreduce rows, or rows whose times no positive alpha and B explain are a cdl::Error.
CostFit fitCost(const std::vector<MeasuredRow>& rows);
// T(n, W) of a scheme for links of `bandwidth` bytes/s and latency `alpha` seconds.
double modelSeconds(const SchemeCost& s, double bytes, int ranks, double alpha, double bandwidth);

}  // namespace cdl::bench
