#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/reduce/compressed_allreduce.h"
#include "comm/transport/communicator.h"

namespace cdl::comm {

struct PowerSgdOptions {
  int rank = 4;         // r >= 1: columns of the factors P (rows x r) and Q (cols x r)
  uint64_t seed = 0;    // stream of the initial Q; must be the same on every rank
  bool average = true;  // divide the sum by the number of ranks
  // Compress grad + residual and keep what the low-rank approximation missed in the residual.
  bool errorFeedback = true;
  // Upper bound on how long each collective may take; zero or less: CDL_COMM_TIMEOUT.
  double timeoutSeconds = 0.0;
};

// Whether powerSgdAllreduce compresses a rows x cols matrix at rank r: false for vectors
// (rows or cols below 2) and wherever the factors are no smaller than the matrix,
// (rows + cols) * r >= rows * cols. Such tensors go through a plain allreduce.
bool powerSgdCompresses(int64_t rows, int64_t cols, int rank);

// Column k of the initial Q that `seed` draws for a matrix of `cols` columns (cols floats), the
// same on every rank and machine: a state of a higher rank starts its extra columns from these.
void drawPowerSgdColumn(uint64_t seed, int k, int64_t cols, float* qk);

// Everything a PowerSgdState holds between steps, as plain vectors (for checkpoints).
struct PowerSgdSnapshot {
  int64_t rows = 0;
  int64_t cols = 0;
  int rank = 0;  // 0: no compressed step has run yet (q empty)
  // The warm-start Q, column by column: q[k * cols + j] = Q(j, k); rank * cols floats or empty.
  std::vector<float> q;
  // The error-feedback residual, row-major: rows * cols floats, or empty (nothing kept yet).
  std::vector<float> residual;
};

// Note [PowerSGD state]
// The per-tensor memory of PowerSGD: the warm-start Q of the last step (identical on every rank,
// since it is the result of an allreduce) and this rank's error-feedback residual. A state is
// created for one tensor name and shape and used by one thread at a time. Q is drawn from the
// options' seed on the first compressed step, and again when the requested rank changes (the
// residual is kept), so a rate planner may move a tensor between ranks.
class PowerSgdState {
 public:
  // name appears in every error about this tensor; rows, cols >= 0.
  PowerSgdState(std::string name, int64_t rows, int64_t cols);

  const std::string& name() const { return name_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // The rank Q currently has; 0 before the first compressed step.
  int rank() const { return rank_; }
  // Q column by column (rank() * cols() floats), as in PowerSgdSnapshot::q.
  const std::vector<float>& q() const { return q_; }
  // rows() * cols() floats, or empty while no residual has been kept.
  const std::vector<float>& residual() const { return residual_; }

  PowerSgdSnapshot snapshot() const;
  // Replaces the state with s. Throws cdl::Error naming this tensor when the shape differs from
  // this state's, the rank is not one at which the tensor compresses, a vector has the wrong
  // length or a value is NaN or infinite; the state is unchanged then.
  void restore(const PowerSgdSnapshot& s);

  // The snapshot as self-checking bytes (Note [PowerSGD state bytes]) and back; fromBytes
  // validates like restore, and also the format, the lengths and the checksum.
  Bytes toBytes() const;
  void fromBytes(const uint8_t* data, size_t len);
  void fromBytes(const Bytes& b) { fromBytes(b.data(), b.size()); }

  // The factors between the phases of Note [PowerSGD phases]: P column by column (rank() * rows()
  // floats) and Q as q().
  std::vector<float>& pBuffer() { return p_; }
  std::vector<float>& qBuffer() { return q_; }

 private:
  friend std::vector<float>& powerSgdLocalP(PowerSgdState& state, float* grad,
                                            const PowerSgdOptions& opt);
  friend std::vector<float>& powerSgdLocalQ(PowerSgdState& state, const float* grad);
  friend void powerSgdFoldResidual(PowerSgdState& state, float* grad, const PowerSgdOptions& opt);
  friend void powerSgdFinish(PowerSgdState& state, float* grad, int ranks,
                             const PowerSgdOptions& opt);

  std::string name_;
  int64_t rows_;
  int64_t cols_;
  int rank_ = 0;
  std::vector<float> q_;
  std::vector<float> residual_;
  std::vector<float> p_;  // scratch: P column by column (rank * rows floats)
};

// Note [PowerSGD allreduce]
// Averages grad (rows x cols, row-major, the same shape on every rank) into a rank-r
// approximation with two allreduces (Vogels et al., PowerSGD): M = grad + residual; P = M Q;
// allreduce P; orthonormalize P's columns (modified Gram–Schmidt; a column that is zero or
// linearly dependent on the earlier ones becomes zero); Q = M^T P; allreduce and average Q;
// grad = P Q^T (times the number of ranks when opt.average is off); residual = M - P Q^T. Q is
// kept as the next step's warm start; each step starts by scaling Q's columns to unit length,
// and a zero column is drawn afresh from the seed, so the iteration never stalls on zero input.
// Every rank (running the same build) ends with bit-identical grad and Q. Tensors for which
// powerSgdCompresses is false take a plain allreduce (with error feedback on, a residual left from
// earlier compressed steps is folded in and cleared). On the compressed path a NaN or infinity in
// any rank's gradient makes every rank throw cdl::Error naming the tensor; grad is unspecified then
// and the state stays usable. Must be called by every rank of comm with the same shape and options,
// from one thread per rank.
void powerSgdAllreduce(Communicator& comm, PowerSgdState& state, float* grad, int64_t rows,
                       int64_t cols, const PowerSgdOptions& opt = {},
                       AllreduceStats* stats = nullptr);

// Note [PowerSGD phases]
// powerSgdAllreduce's arithmetic between its collectives, for callers that run the collectives
// themselves (the Python DDP hook over a torch process group). For a tensor that compresses
// (powerSgdCompresses(state.rows(), state.cols(), opt.rank)):
//   1. powerSgdLocalP: grad becomes M = grad + residual; returns this rank's P (column by
//      column), which the caller sums over the ranks in place (an allreduce);
//   2. powerSgdLocalQ: checks the summed P (non-finite: cdl::Error naming the tensor),
//      orthonormalizes it and returns this rank's Q = M^T P, which the caller sums in place;
//   3. powerSgdFinish: checks and averages the summed Q over `ranks`, grad = P Q^T (times ranks
//      unless opt.average), residual = M - P Q^T.
// A tensor that does not compress takes powerSgdFoldResidual and then a plain fp32 allreduce
// (averaged with averageOverRanks). Run in this order with sums that are the same bits as the
// Communicator's allreduce, the phases give powerSgdAllreduce's result bit for bit.
std::vector<float>& powerSgdLocalP(PowerSgdState& state, float* grad, const PowerSgdOptions& opt);
std::vector<float>& powerSgdLocalQ(PowerSgdState& state, const float* grad);
void powerSgdFinish(PowerSgdState& state, float* grad, int ranks, const PowerSgdOptions& opt);
// With error feedback, adds a residual left from compressed steps to grad and clears it.
void powerSgdFoldResidual(PowerSgdState& state, float* grad, const PowerSgdOptions& opt);

}  // namespace cdl::comm
