#include "comm/reduce/powersgd.h"

#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/base/bytes.h"
#include "kernels/base/clock.h"
#include "kernels/base/cpu_dispatch.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::comm {
namespace {

// Note [PowerSGD arithmetic]
// The products run in loops whose order is fixed by the source, never by the compiler or the
// vector width: sums over the long dimension go through kLanes interleaved partial sums added in
// lane order at the end, and the other products accumulate one term at a time in index order.
// The compiler vectorizes across lanes and across the output index without reassociating, so
// every rank that runs the same binary computes the same bits from the same inputs.
constexpr int kLanes = 16;

// The products are also built for AVX2 and picked at load time (CDL_TARGET_CLONES_NO_FMA).
#if defined(__GNUC__)
#define CDL_PSGD_INLINE inline __attribute__((always_inline))
#else
#define CDL_PSGD_INLINE inline
#endif

// The dot product of a and b, summed in kLanes interleaved lanes that are then added in lane
// order.
CDL_PSGD_INLINE float dotLanes(const float* __restrict a, const float* __restrict b, int64_t n) {
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[j + l] * b[j + l];
  }
  for (int l = 0; j + l < n; ++l) acc[l] += a[j + l] * b[j + l];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// y_k[j] += c[k] * x[j] for the four rows y_k.
CDL_PSGD_INLINE void update4(float* __restrict y0, float* __restrict y1, float* __restrict y2,
                             float* __restrict y3, const float* __restrict x, const float* c,
                             int64_t n) {
  const float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
  for (int64_t j = 0; j < n; ++j) {
    const float v = x[j];
    y0[j] += c0 * v;
    y1[j] += c1 * v;
    y2[j] += c2 * v;
    y3[j] += c3 * v;
  }
}

// y[j] += c[0] x0[j], then += c[1] x1[j], and so on, in that order.
CDL_PSGD_INLINE void accumulate4(float* __restrict y, const float* __restrict x0,
                                 const float* __restrict x1, const float* __restrict x2,
                                 const float* __restrict x3, const float* c, int64_t n) {
  const float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
  for (int64_t j = 0; j < n; ++j) {
    y[j] = (((y[j] + c0 * x0[j]) + c1 * x1[j]) + c2 * x2[j]) + c3 * x3[j];
  }
}

double dotLanesDouble(const float* a, const float* b, int64_t n) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += double(a[j + l]) * double(b[j + l]);
  }
  for (int l = 0; j + l < n; ++l) acc[l] += double(a[j + l]) * double(b[j + l]);
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// Columns per block in the products that update r rows of Q^T per matrix row: the block of Q^T
// (r x block floats) stays in a 32 KiB L1 cache.
int64_t columnBlock(int r) { return std::max<int64_t>(64, (8192 / r) / kLanes * kLanes); }

// m += residual when residual is set, then pt (r x rows) = (M Q)^T for M = m (rows x cols) and
// qt = Q^T (r x cols).
CDL_TARGET_CLONES_NO_FMA void multiplyMQ(float* m, const float* residual, int64_t rows,
                                         int64_t cols, const float* qt, int r, float* pt) {
  for (int64_t i = 0; i < rows; ++i) {
    float* mi = m + i * cols;
    if (residual) {
      const float* ei = residual + i * cols;
      for (int64_t j = 0; j < cols; ++j) mi[j] += ei[j];
    }
    for (int k = 0; k < r; ++k) pt[k * rows + i] = dotLanes(mi, qt + k * cols, cols);
  }
}

// qt (r x cols) = (M^T P)^T, summed over the rows of M in order.
CDL_TARGET_CLONES_NO_FMA void multiplyMtP(const float* m, int64_t rows, int64_t cols,
                                          const float* pt, int r, float* qt) {
  std::fill(qt, qt + r * cols, 0.0f);
  const int64_t block = columnBlock(r);
  for (int64_t j0 = 0; j0 < cols; j0 += block) {
    const int64_t nj = std::min(block, cols - j0);
    for (int64_t i = 0; i < rows; ++i) {
      const float* mi = m + i * cols + j0;
      int k = 0;
      for (; k + 4 <= r; k += 4) {
        const float c[4] = {pt[k * rows + i], pt[(k + 1) * rows + i], pt[(k + 2) * rows + i],
                            pt[(k + 3) * rows + i]};
        float* q = qt + k * cols + j0;
        update4(q, q + cols, q + 2 * cols, q + 3 * cols, mi, c, nj);
      }
      for (; k < r; ++k) {
        const float c = pt[k * rows + i];
        float* qk = qt + k * cols + j0;
        for (int64_t j = 0; j < nj; ++j) qk[j] += c * mi[j];
      }
    }
  }
}

// With A = P Q^T (pt, qt: r x rows, r x cols): residual = M - A when residual is set, then
// m = A * scale. m holds M on entry. A's terms are added in the order of k.
CDL_TARGET_CLONES_NO_FMA void reconstruct(const float* pt, const float* qt, int r, int64_t rows,
                                          int64_t cols, float scale, float* m, float* residual) {
  const int64_t block = columnBlock(r);
  std::vector<float> a(static_cast<size_t>(std::min(block, cols)));
  for (int64_t j0 = 0; j0 < cols; j0 += block) {
    const int64_t nj = std::min(block, cols - j0);
    for (int64_t i = 0; i < rows; ++i) {
      std::fill(a.begin(), a.begin() + nj, 0.0f);
      int k = 0;
      for (; k + 4 <= r; k += 4) {
        const float c[4] = {pt[k * rows + i], pt[(k + 1) * rows + i], pt[(k + 2) * rows + i],
                            pt[(k + 3) * rows + i]};
        const float* q = qt + k * cols + j0;
        accumulate4(a.data(), q, q + cols, q + 2 * cols, q + 3 * cols, c, nj);
      }
      for (; k < r; ++k) {
        const float c = pt[k * rows + i];
        const float* qk = qt + k * cols + j0;
        for (int64_t j = 0; j < nj; ++j) a[j] += c * qk[j];
      }
      float* mi = m + i * cols + j0;
      if (residual) {
        float* ei = residual + i * cols + j0;
        for (int64_t j = 0; j < nj; ++j) ei[j] = mi[j] - a[j];
      }
      for (int64_t j = 0; j < nj; ++j) mi[j] = a[j] * scale;
    }
  }
}

// A column of the initial Q: approximately Gaussian entries (the sum of four uniform draws, which
// needs no libm and so gives the same bits everywhere), a pure function of (seed, k, j).
}  // namespace

void drawPowerSgdColumn(uint64_t seed, int k, int64_t cols, float* qk) {
  const uint64_t key = kernels::mix64(seed ^ 0x50535344u);  // "PSGD"
  for (int64_t j = 0; j < cols; ++j) {
    const uint64_t c = 4 * (static_cast<uint64_t>(k) * static_cast<uint64_t>(cols) + j);
    qk[j] = (kernels::uniform01(key, c) + kernels::uniform01(key, c + 1)) +
            (kernels::uniform01(key, c + 2) + kernels::uniform01(key, c + 3)) - 2.0f;
  }
}

namespace {

void scaleColumn(float* x, int64_t n, double s) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(double(x[i]) * s);
}

// Scales Q's columns to unit length, drawing zero ones afresh: P = M Q then neither underflows
// for tiny gradients nor stalls after a step whose input was zero.
void prepareQ(float* qt, int r, int64_t cols, uint64_t seed) {
  for (int k = 0; k < r; ++k) {
    float* qk = qt + k * cols;
    double norm = std::sqrt(dotLanesDouble(qk, qk, cols));
    if (!(norm > 0.0)) {
      drawPowerSgdColumn(seed, k, cols, qk);
      norm = std::sqrt(dotLanesDouble(qk, qk, cols));
    }
    if (norm > 0.0) scaleColumn(qk, cols, 1.0 / norm);
  }
}

// A column left with no more than this fraction of its length once the earlier columns are
// projected out is taken as linearly dependent on them (up to rounding) and set to zero.
constexpr double kDependentFraction = 1e-5;

// Orthonormalizes the r columns of P (rows of pt) by modified Gram–Schmidt with the projections
// done twice and norms in double. A zero or dependent column becomes zero; no NaN can arise from
// finite input.
void orthonormalize(float* pt, int r, int64_t rows) {
  std::vector<char> zero(static_cast<size_t>(r), 0);
  for (int k = 0; k < r; ++k) {
    float* pk = pt + k * rows;
    const double before = std::sqrt(dotLanesDouble(pk, pk, rows));
    for (int pass = 0; pass < 2 && before > 0.0; ++pass) {
      for (int l = 0; l < k; ++l) {
        if (zero[l]) continue;
        const float* pl = pt + l * rows;
        const double c = dotLanesDouble(pl, pk, rows);
        for (int64_t i = 0; i < rows; ++i) {
          pk[i] = static_cast<float>(double(pk[i]) - c * double(pl[i]));
        }
      }
    }
    const double after = std::sqrt(dotLanesDouble(pk, pk, rows));
    if (after > kDependentFraction * before && after > 0.0) {
      scaleColumn(pk, rows, 1.0 / after);
    } else {
      std::fill(pk, pk + rows, 0.0f);
      zero[k] = 1;
    }
  }
}

bool allFinite(const float* x, int64_t n) {
  // Any NaN or infinity makes x * 0 NaN, so the sum is NaN; finite sums may overflow, hence the
  // products with zero and not the values.
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += x[j + l] * 0.0f;
  }
  for (int l = 0; j + l < n; ++l) acc[l] += x[j + l] * 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    if (acc[l] != 0.0f) return false;
  }
  return true;
}

int64_t firstNonFinite(const std::vector<float>& x) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace

bool powerSgdCompresses(int64_t rows, int64_t cols, int rank) {
  CDL_CHECK(rows >= 0 && cols >= 0, "PowerSGD: bad shape ", rows, "x", cols);
  if (rows < 2 || cols < 2 || rank < 1 || rank >= std::min(rows, cols)) return false;
  // rank < min(rows, cols), so (rows + cols) * rank < 2 * rows * cols; only the product can
  // overflow, for shapes beyond any memory.
  CDL_CHECK(rows <= std::numeric_limits<int64_t>::max() / 2 / cols, "PowerSGD: shape ", rows, "x",
            cols, " is too large");
  return (rows + cols) * rank < rows * cols;
}

PowerSgdState::PowerSgdState(std::string name, int64_t rows, int64_t cols)
    : name_(std::move(name)), rows_(rows), cols_(cols) {
  CDL_CHECK(rows >= 0 && cols >= 0, "PowerSGD state of '", name_, "': bad shape ", rows, "x", cols);
}

PowerSgdSnapshot PowerSgdState::snapshot() const {
  PowerSgdSnapshot s;
  s.rows = rows_;
  s.cols = cols_;
  s.rank = rank_;
  s.q = q_;
  s.residual = residual_;
  return s;
}

void PowerSgdState::restore(const PowerSgdSnapshot& s) {
  const std::string who = "PowerSGD state of '" + name_ + "': ";
  CDL_CHECK(s.rows == rows_ && s.cols == cols_, who, "the saved state is for a ", s.rows, "x",
            s.cols, " matrix but this tensor is ", rows_, "x", cols_,
            " (was the model or its parameter order changed?)");
  CDL_CHECK(s.rank == 0 || (s.rank > 0 && powerSgdCompresses(rows_, cols_, s.rank)), who,
            "the saved rank ", s.rank, " is not one at which a ", rows_, "x", cols_,
            " matrix is compressed");
  const int64_t wantQ = static_cast<int64_t>(s.rank) * cols_;
  CDL_CHECK(static_cast<int64_t>(s.q.size()) == wantQ, who, "the saved Q holds ", s.q.size(),
            " floats but rank ", s.rank, " needs ", wantQ);
  CDL_CHECK(s.residual.empty() || static_cast<int64_t>(s.residual.size()) == rows_ * cols_, who,
            "the saved residual holds ", s.residual.size(), " floats but the tensor has ",
            rows_ * cols_);
  const int64_t badQ = firstNonFinite(s.q), badE = firstNonFinite(s.residual);
  CDL_CHECK(badQ < 0, who, "the saved Q holds ", s.q[badQ], " at element ", badQ);
  CDL_CHECK(badE < 0, who, "the saved residual holds ", s.residual[badE], " at element ", badE);
  rank_ = s.rank;
  q_ = s.q;
  residual_ = s.residual;
}

// Note [PowerSGD state bytes]
// Little-endian, fixed 48-byte header, then the floats, then a checksum:
//   0 "CPSG"; 4 u32 version (1); 8 i64 rows; 16 i64 cols; 24 i32 rank; 28 u32 zero;
//   32 u64 floats in Q; 40 u64 floats in the residual; 48 Q; then the residual;
//   last 8: xxhash64 (seed 0) of everything before it.
namespace {

constexpr char kStateMagic[4] = {'C', 'P', 'S', 'G'};
constexpr uint32_t kStateVersion = 1;
constexpr size_t kStateHeaderBytes = 48;

}  // namespace

Bytes PowerSgdState::toBytes() const {
  const size_t floats = q_.size() + residual_.size();
  Bytes b(kStateHeaderBytes + 4 * floats + 8);
  std::memcpy(b.data(), kStateMagic, 4);
  storeLE<uint32_t>(b.data() + 4, kStateVersion);
  storeLE<int64_t>(b.data() + 8, rows_);
  storeLE<int64_t>(b.data() + 16, cols_);
  storeLE<int32_t>(b.data() + 24, rank_);
  storeLE<uint32_t>(b.data() + 28, 0);
  storeLE<uint64_t>(b.data() + 32, q_.size());
  storeLE<uint64_t>(b.data() + 40, residual_.size());
  std::memcpy(b.data() + kStateHeaderBytes, q_.data(), 4 * q_.size());
  std::memcpy(b.data() + kStateHeaderBytes + 4 * q_.size(), residual_.data(), 4 * residual_.size());
  const size_t body = b.size() - 8;
  storeLE<uint64_t>(b.data() + body, XXH64(b.data(), body, 0));
  return b;
}

void PowerSgdState::fromBytes(const uint8_t* data, size_t len) {
  const std::string who = "PowerSGD state of '" + name_ + "': ";
  CDL_CHECK(data != nullptr || len == 0, who, "no bytes given");
  CDL_CHECK(len >= kStateHeaderBytes + 8, who, "the saved state is ", len,
            " bytes, shorter than its header");
  CDL_CHECK(std::memcmp(data, kStateMagic, 4) == 0, who, "the bytes are not a PowerSGD state");
  const uint32_t version = loadLE<uint32_t>(data + 4);
  CDL_CHECK(version == kStateVersion, who, "unsupported state format version ", version,
            " (this build reads ", kStateVersion, ")");
  const uint64_t qn = loadLE<uint64_t>(data + 32), en = loadLE<uint64_t>(data + 40);
  const uint64_t maxFloats = (len - kStateHeaderBytes - 8) / 4;
  CDL_CHECK(qn <= maxFloats && en <= maxFloats - qn &&
                kStateHeaderBytes + 4 * (qn + en) + 8 == len && loadLE<uint32_t>(data + 28) == 0,
            who, "the saved state is damaged: its header does not match its length of ", len,
            " bytes");
  CDL_CHECK(loadLE<uint64_t>(data + len - 8) == XXH64(data, len - 8, 0), who,
            "the saved state is damaged: checksum mismatch");
  PowerSgdSnapshot s;
  s.rows = loadLE<int64_t>(data + 8);
  s.cols = loadLE<int64_t>(data + 16);
  s.rank = loadLE<int32_t>(data + 24);
  s.q.resize(qn);
  s.residual.resize(en);
  std::memcpy(s.q.data(), data + kStateHeaderBytes, 4 * qn);
  std::memcpy(s.residual.data(), data + kStateHeaderBytes + 4 * qn, 4 * en);
  restore(s);
}

void powerSgdFoldResidual(PowerSgdState& state, float* grad, const PowerSgdOptions& opt) {
  std::vector<float>& residual = state.residual_;
  if (!opt.errorFeedback || residual.empty()) return;
  const int64_t n = state.rows_ * state.cols_;
  for (int64_t i = 0; i < n; ++i) grad[i] += residual[i];
  residual.clear();
}

std::vector<float>& powerSgdLocalP(PowerSgdState& state, float* grad, const PowerSgdOptions& opt) {
  const int64_t rows = state.rows_, cols = state.cols_;
  CDL_CHECK(powerSgdCompresses(rows, cols, opt.rank), "PowerSGD on '", state.name_, "': a ", rows,
            "x", cols, " matrix is not compressed at rank ", opt.rank);
  const int r = opt.rank;
  std::vector<float>& residual = state.residual_;
  std::vector<float>& qt = state.q_;
  std::vector<float>& pt = state.p_;
  if (state.rank_ != r) {
    qt.assign(static_cast<size_t>(r * cols), 0.0f);  // drawn by prepareQ
    state.rank_ = r;
  }
  pt.resize(static_cast<size_t>(r * rows));
  const bool addResidual = opt.errorFeedback && !residual.empty();
  if (opt.errorFeedback && residual.empty())
    residual.assign(static_cast<size_t>(rows * cols), 0.0f);
  prepareQ(qt.data(), r, cols, opt.seed);
  multiplyMQ(grad, addResidual ? residual.data() : nullptr, rows, cols, qt.data(), r, pt.data());
  return pt;
}

std::vector<float>& powerSgdLocalQ(PowerSgdState& state, const float* grad) {
  std::vector<float>& pt = state.p_;
  const int r = state.rank_;
  CDL_CHECK(r > 0 && pt.size() == static_cast<size_t>(r) * state.rows_, "PowerSGD on '",
            state.name_, "': Q asked for before P");
  CDL_CHECK(allFinite(pt.data(), r * state.rows_), "PowerSGD on '", state.name_,
            "': the gradient holds NaN or infinity on at least one rank");
  orthonormalize(pt.data(), r, state.rows_);
  multiplyMtP(grad, state.rows_, state.cols_, pt.data(), r, state.q_.data());
  return state.q_;
}

void powerSgdFinish(PowerSgdState& state, float* grad, int ranks, const PowerSgdOptions& opt) {
  std::vector<float>& qt = state.q_;
  const int r = state.rank_;
  CDL_CHECK(ranks >= 1, "PowerSGD on '", state.name_, "': ", ranks, " ranks");
  CDL_CHECK(r > 0 && qt.size() == static_cast<size_t>(r) * state.cols_, "PowerSGD on '",
            state.name_, "': finished before Q");
  if (!allFinite(qt.data(), r * state.cols_)) {
    qt.clear();
    state.rank_ = 0;
    CDL_THROW("PowerSGD on '", state.name_, "': Q overflowed (the gradient is too large for fp32)");
  }
  // Q is averaged whatever opt.average says: the residual is always M minus the averaged
  // approximation, and a sum is that approximation times the number of ranks.
  if (ranks > 1) {
    const float inv = 1.0f / static_cast<float>(ranks);
    for (float& v : qt) v *= inv;
  }
  reconstruct(state.p_.data(), qt.data(), r, state.rows_, state.cols_,
              opt.average ? 1.0f : static_cast<float>(ranks), grad,
              opt.errorFeedback ? state.residual_.data() : nullptr);
}

void powerSgdAllreduce(Communicator& comm, PowerSgdState& state, float* grad, int64_t rows,
                       int64_t cols, const PowerSgdOptions& opt, AllreduceStats* stats) {
  const std::string& name = state.name();
  CDL_CHECK(rows == state.rows() && cols == state.cols(), "PowerSGD on '", name,
            "': called with a ", rows, "x", cols, " gradient but the state is for ", state.rows(),
            "x", state.cols());
  CDL_CHECK(opt.rank >= 1, "PowerSGD on '", name, "': rank must be >= 1, got ", opt.rank);
  const int64_t n = rows * cols;
  CDL_CHECK(grad != nullptr || n == 0, "PowerSGD on '", name, "': null gradient");
  AllreduceStats local;
  AllreduceStats& st = startStats(stats, &local, comm.size(), n);
  const int size = comm.size();
  auto t0 = Clock::now();

  if (!powerSgdCompresses(rows, cols, opt.rank)) {
    powerSgdFoldResidual(state, grad, opt);
    st.encodeSeconds += secondsSince(t0);
    fp32Allreduce(comm, grad, n, opt.average, opt.timeoutSeconds, &st);
    return;
  }

  const int r = opt.rank;
  std::vector<float>& pt = powerSgdLocalP(state, grad, opt);
  st.encodeSeconds += secondsSince(t0);

  t0 = Clock::now();
  waitWork(comm.allreduce(pt.data(), r * rows), opt.timeoutSeconds);
  st.commSeconds += secondsSince(t0);

  t0 = Clock::now();
  std::vector<float>& qt = powerSgdLocalQ(state, grad);
  st.encodeSeconds += secondsSince(t0);

  t0 = Clock::now();
  waitWork(comm.allreduce(qt.data(), r * cols), opt.timeoutSeconds);
  st.commSeconds += secondsSince(t0);
  st.wireBytes = ringAllreduceBytes(size, 4.0 * static_cast<double>(r * rows)) +
                 ringAllreduceBytes(size, 4.0 * static_cast<double>(r * cols));

  t0 = Clock::now();
  powerSgdFinish(state, grad, size, opt);
  st.decodeSeconds += secondsSince(t0);
}

}  // namespace cdl::comm
