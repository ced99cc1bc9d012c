#include "core/cdl/cdl_kernel.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/base/error.h"
#include "kernels/cdl_window.h"
#include "kernels/rng.h"

namespace cdl::core {
namespace {

constexpr int kMaxWindow = kernels::kMaxWindowLevels;
// Note [Vector windows]: the windows are computed kernels::kWindowLanes elements at a time as
// vector code (kernels/cdl_window.h: one polynomial exp per level, relative to the level nearest
// u), and so are the backward pass's per-element gradients; the forward pass's masses and samples
// and the backward pass's sums for q and kappa are then taken element by element in order.
// Elements the batch cannot take (x not finite, |x / q| beyond kernels::kMaxBatchLevel) get their
// window from the scalar formula here (windowOf).

// Elements per block of the parallel loops: every block's level masses (and gradient sums) are
// summed in block order, so the result does not depend on the thread count.
constexpr int64_t kBlock = 16384;

// The window of one element: its first level and the probabilities over it.
struct Window {
  int64_t first = 0;
  float p[kMaxWindow];
  float mean = 0.0f;  // sum_k P_k a_k, in level units
};

// A call's step (clamped above 0), kappa (clamped to [kKappaMin, kKappaMax]), level range and
// window width (at most the range's levels).
using Params = kernels::WindowParams;

// The scalar formula: one exp per level, after subtracting the largest exponent.
inline float windowOf(const Params& s, float x, Window* out) {
  const float u = x / s.q;
  const float centre = std::isfinite(u) ? std::nearbyint(std::clamp(u, -1e9f, 1e9f)) : 0.0f;
  const int64_t first =
      std::clamp<int64_t>(static_cast<int64_t>(centre) - (s.w - 1) / 2, s.lo, s.hi - s.w + 1);
  out->first = first;
  float top = -INFINITY;
  for (int k = 0; k < s.w; ++k) {
    const float d = u - static_cast<float>(first + k);
    out->p[k] = -s.kappa * d * d;
    top = std::max(top, out->p[k]);
  }
  float z = 0.0f;
  for (int k = 0; k < s.w; ++k) {
    out->p[k] = std::exp(out->p[k] - top);
    z += out->p[k];
  }
  const float inv = 1.0f / z;
  float mean = 0.0f;
  for (int k = 0; k < s.w; ++k) {
    out->p[k] *= inv;
    mean += out->p[k] * static_cast<float>(first + k);
  }
  out->mean = mean;
  return u;
}

Params paramsOf(const at::Tensor& step, const at::Tensor& kappa, LevelRange range, int window,
                bool* stepClamped, bool* kappaClamped) {
  Params s;
  const float q = step.item<float>(), k = kappa.item<float>();
  *stepClamped = !(q > 1e-12f);
  *kappaClamped = !(k >= kKappaMin && k <= kKappaMax);
  s.q = std::max(q, 1e-12f);
  s.kappa = std::clamp(k, static_cast<float>(kKappaMin), static_cast<float>(kKappaMax));
  s.lo = range.lo;
  s.hi = range.hi;
  s.w = static_cast<int>(std::min<int64_t>(window, range.count()));
  return s;
}

// The windows of x[0, n) (n <= kernels::kWindowLanes) into b: as vector code, the elements it
// leaves (Note [Vector windows]) by the scalar formula.
void windowBatch(const Params& s, const float* x, int n, kernels::WindowBatch* b) {
  kernels::batchWindows(s, x, n, b);
  for (int i = 0; i < n; ++i) {
    if (!b->full[i]) continue;
    Window win;
    windowOf(s, x[i], &win);
    b->first[i] = static_cast<float>(win.first);
    b->mean[i] = win.mean;
    for (int k = 0; k < s.w; ++k) b->p[k][i] = win.p[k];
  }
}

// Runs body(begin, end, block) over the blocks of n elements, in parallel; block b covers
// [b kBlock, min(n, (b + 1) kBlock)).
template <typename Body>
void forBlocks(int64_t n, const Body& body) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) body(b * kBlock, std::min(n, (b + 1) * kBlock), b);
  });
}

// Level masses per block of forBlocks, each block adding into a row of its own, summed in block
// order: the same masses at any thread count.
class BlockMasses {
 public:
  BlockMasses(int64_t n, int64_t levels)
      : levels_(levels), rows_(static_cast<size_t>(((n + kBlock - 1) / kBlock) * levels), 0.0) {}
  double* block(int64_t b) { return rows_.data() + b * levels_; }
  // The sum over the blocks, a float tensor of `levels` entries.
  at::Tensor total(const at::TensorOptions& options) const {
    std::vector<double> sum(static_cast<size_t>(levels_), 0.0);
    for (size_t i = 0; i < rows_.size(); ++i) sum[i % static_cast<size_t>(levels_)] += rows_[i];
    at::Tensor m = at::empty({levels_}, options);
    std::copy(sum.begin(), sum.end(), m.data_ptr<float>());
    return m;
  }

 private:
  int64_t levels_;
  std::vector<double> rows_;
};

// d(i q)/dq of a sampled level i as LSQ takes it for the rounded one: i - u inside the range
// (u = x / q: the level follows u straight through), i outside it (NaN: 0).
float sampleStepTerm(const Params& s, float x, float y) {
  const float u = x / s.q, i = y / s.q;
  if (!(u == u)) return 0.0f;
  return u >= static_cast<float>(s.lo) && u <= static_cast<float>(s.hi) ? i - u : i;
}

struct BackwardInputs {
  const Params& s;
  const float* x;
  const float* gy;  // the gradient of the output
  const float* gm;  // of the level masses
  const float* y;  // the sampled output: q's gradient is the sample's (Note [Step from the sample])
};

// The gradients of elements [begin, end), kernels::kWindowLanes at a time: dx into gx as vector
// code (kernels::windowGradients), the sums for q and kappa into *gq, *gk in element order. The
// masses' gradient is used when in.gm is set, kappa's terms when kappaGrad.
void backwardBlock(const BackwardInputs& in, bool kappaGrad, int64_t begin, int64_t end, float* gx,
                   double* gq, double* gk) {
  const Params& s = in.s;
  kernels::WindowBatch wb;
  float gm[kernels::kMaxWindowLevels][kernels::kWindowLanes];
  float qTerm[kernels::kWindowLanes], dMeanDk[kernels::kWindowLanes], rateK[kernels::kWindowLanes];
  double sumQ = 0.0, sumK = 0.0;
  for (int64_t j0 = begin; j0 < end; j0 += kernels::kWindowLanes) {
    const int m = static_cast<int>(std::min<int64_t>(kernels::kWindowLanes, end - j0));
    windowBatch(s, in.x + j0, m, &wb);
    if (in.gm != nullptr) {
      for (int i = 0; i < m; ++i) {
        const float* g = in.gm + (static_cast<int64_t>(wb.first[i]) - s.lo);
        for (int k = 0; k < s.w; ++k) gm[k][i] = g[k];
      }
    }
    kernels::windowGradients(s, wb, m, in.gy + j0, in.gm != nullptr ? gm : nullptr, gx + j0, qTerm,
                             kappaGrad ? dMeanDk : nullptr, rateK);
    for (int i = 0; i < m; ++i) {
      const double g = static_cast<double>(in.gy[j0 + i]);
      sumQ += g * (in.y != nullptr ? sampleStepTerm(s, in.x[j0 + i], in.y[j0 + i]) : qTerm[i]);
      if (kappaGrad) sumK += g * s.q * dMeanDk[i] + static_cast<double>(rateK[i]);
    }
  }
  *gq = sumQ;
  *gk = sumK;
}

class FusedFunction : public torch::autograd::Function<FusedFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x, const at::Tensor& step,
                                                const at::Tensor& kappa, int64_t lo, int64_t hi,
                                                int64_t window, bool sample, int64_t key,
                                                int64_t counterBase) {
    const LevelRange range{lo, hi};
    bool stepClamped = false, kappaClamped = false;
    const Params s =
        paramsOf(step, kappa, range, static_cast<int>(window), &stepClamped, &kappaClamped);
    const at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty(xc.sizes(), xc.options());
    const int64_t n = xc.numel(), levels = range.count();
    BlockMasses masses(n, levels);
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    forBlocks(n, [&](int64_t begin, int64_t end, int64_t b) {
      double* mass = masses.block(b);
      kernels::WindowBatch wb;
      for (int64_t j0 = begin; j0 < end; j0 += kernels::kWindowLanes) {
        const int m = static_cast<int>(std::min<int64_t>(kernels::kWindowLanes, end - j0));
        windowBatch(s, xp + j0, m, &wb);
        for (int i = 0; i < m; ++i) {
          const int64_t j = j0 + i, first = static_cast<int64_t>(wb.first[i]);
          for (int k = 0; k < s.w; ++k) mass[first + k - lo] += wb.p[k][i];
          if (!sample) {
            yp[j] = s.q * wb.mean[i];
            continue;
          }
          // The first window slot whose cumulative mass reaches the draw (inverse CDF), branch-
          // free: the number of slots before the last whose cumulative mass is below it.
          const float draw = kernels::uniform01(static_cast<uint64_t>(key),
                                                static_cast<uint64_t>(counterBase + j));
          float cdf = 0.0f;
          int slot = 0;
          for (int k = 0; k < s.w - 1; ++k) {
            cdf += wb.p[k][i];
            slot += cdf < draw ? 1 : 0;
          }
          yp[j] = s.q * static_cast<float>(first + slot);
        }
      }
    });
    const at::Tensor m = masses.total(xc.options());
    // A sample's output is kept for q's gradient (Note [Step from the sample]).
    ctx->save_for_backward(sample ? std::vector<at::Tensor>{xc, step, kappa, y}
                                  : std::vector<at::Tensor>{xc, step, kappa});
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    ctx->saved_data["window"] = window;
    return {y, m};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const LevelRange range{ctx->saved_data["lo"].toInt(), ctx->saved_data["hi"].toInt()};
    bool stepClamped = false, kappaClamped = false;
    const Params s =
        paramsOf(saved[1], saved[2], range, static_cast<int>(ctx->saved_data["window"].toInt()),
                 &stepClamped, &kappaClamped);
    const at::Tensor gy = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(x);
    // The masses' gradient is absent when no rate term of weight > 0 uses them, kappa's when it
    // is not trained: their terms are then skipped.
    const bool rate = grads[1].defined(), trainedKappa = ctx->needs_input_grad(2);
    const at::Tensor gm = rate ? grads[1].contiguous() : at::zeros({range.count()});
    const at::Tensor sampled = saved.size() > 3 ? saved[3].contiguous() : at::Tensor();
    const BackwardInputs in{s, x.data_ptr<float>(), gy.data_ptr<float>(),
                            rate ? gm.data_ptr<float>() : nullptr,
                            sampled.defined() ? sampled.data_ptr<float>() : nullptr};
    at::Tensor gx = at::empty(x.sizes(), x.options());
    float* gxp = gx.data_ptr<float>();
    const int64_t n = x.numel();
    std::vector<double> blockSums(static_cast<size_t>(2 * ((n + kBlock - 1) / kBlock)), 0.0);
    forBlocks(n, [&](int64_t begin, int64_t end, int64_t b) {
      backwardBlock(in, trainedKappa, begin, end, gxp, &blockSums[2 * b], &blockSums[2 * b + 1]);
    });
    double gq = 0.0, gk = 0.0;
    for (size_t b = 0; b < blockSums.size(); b += 2) {
      gq += blockSums[b];
      gk += blockSums[b + 1];
    }
    at::Tensor gStep = at::full({1}, stepClamped ? 0.0 : gq, saved[1].options());
    at::Tensor gKappa = at::full({1}, kappaClamped ? 0.0 : gk, saved[2].options());
    return {gx,           gStep,        gKappa,       at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class LsqFunction : public torch::autograd::Function<LsqFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x, const at::Tensor& step,
                                                int64_t lo, int64_t hi) {
    const float q = std::max(step.item<float>(), 1e-12f);
    const at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty(xc.sizes(), xc.options());
    const int64_t n = xc.numel(), levels = hi - lo + 1;
    BlockMasses masses(n, levels);
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    forBlocks(n, [&](int64_t begin, int64_t end, int64_t b) {
      double* mass = masses.block(b);
      for (int64_t j = begin; j < end; ++j) {
        const float u = xp[j] / q;
        // A NaN stays NaN in y and is not counted.
        if (!(u == u)) {
          yp[j] = u;
          continue;
        }
        const int64_t i = std::clamp<int64_t>(
            static_cast<int64_t>(std::nearbyint(std::clamp(u, -1e9f, 1e9f))), lo, hi);
        mass[i - lo] += 1.0;
        yp[j] = q * static_cast<float>(i);
      }
    });
    const at::Tensor m = masses.total(xc.options());
    ctx->save_for_backward({xc, step});
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    ctx->mark_non_differentiable({m});
    return {y, m};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const float lo = static_cast<float>(ctx->saved_data["lo"].toInt());
    const float hi = static_cast<float>(ctx->saved_data["hi"].toInt());
    const float q = std::max(saved[1].item<float>(), 1e-12f);
    const at::Tensor gy = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(x);
    const float* xp = x.data_ptr<float>();
    const float* gyp = gy.data_ptr<float>();
    at::Tensor gx = at::empty(x.sizes(), x.options());
    float* gxp = gx.data_ptr<float>();
    const int64_t n = x.numel();
    std::vector<double> blockSums(static_cast<size_t>((n + kBlock - 1) / kBlock), 0.0);
    forBlocks(n, [&](int64_t begin, int64_t end, int64_t b) {
      double gq = 0.0;
      for (int64_t j = begin; j < end; ++j) {
        const float u = xp[j] / q;
        const bool inside = u >= lo && u <= hi;
        gxp[j] = inside ? gyp[j] : 0.0f;
        const float dq = inside ? std::nearbyint(u) - u : (u < lo ? lo : hi);
        gq += static_cast<double>(gyp[j]) * (u == u ? dq : 0.0f);
      }
      blockSums[static_cast<size_t>(b)] = gq;
    });
    double gq = 0.0;
    for (double v : blockSums) gq += v;
    return {gx, at::full({1}, gq, saved[1].options()), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

FusedQuantization lsqQuantize(const at::Tensor& x, const at::Tensor& step, LevelRange range) {
  CDL_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(),
            "quantizer: a float32 CPU tensor is needed, got ", x.scalar_type(), " on ", x.device());
  const auto out = LsqFunction::apply(x, step, range.lo, range.hi);
  return {out[0], out[1]};
}

FusedQuantization fusedQuantize(const at::Tensor& x, const at::Tensor& step,
                                const at::Tensor& kappa, LevelRange range, int window, bool sample,
                                uint64_t key, int64_t counterBase) {
  CDL_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(),
            "quantizer: a float32 CPU tensor is needed, got ", x.scalar_type(), " on ", x.device());
  CDL_CHECK(window >= 1 && window <= kMaxWindow, "quantizer: window = ", window, " (1..",
            kMaxWindow, ")");
  const auto out = FusedFunction::apply(x, step, kappa, range.lo, range.hi, window, sample,
                                        static_cast<int64_t>(key), counterBase);
  return {out[0], out[1]};
}

}  // namespace cdl::core
