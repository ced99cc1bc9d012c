#include "core/cdl/cdl_kernel.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::core {
namespace {

constexpr int kMaxWindow = 256;

// The window of one element: its first level and the probabilities over it.
struct Window {
  int64_t first = 0;
  int w = 0;
  float p[kMaxWindow];
  float mean = 0.0f;  // sum_k P_k a_k, in level units
};

struct Params {
  float q = 1.0f;
  float kappa = 1.0f;
  LevelRange range;
  int w = 1;
  int h = 0;  // levels before the centre
};

inline float windowOf(const Params& s, float x, Window* out) {
  const float u = x / s.q;
  const int64_t first = std::clamp<int64_t>(static_cast<int64_t>(std::nearbyint(u)) - s.h,
                                            s.range.lo, s.range.hi - s.w + 1);
  out->first = first;
  out->w = s.w;
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
  float mean = 0.0f;
  for (int k = 0; k < s.w; ++k) {
    out->p[k] /= z;
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
  s.range = range;
  s.w = static_cast<int>(std::min<int64_t>(window, range.count()));
  s.h = (s.w - 1) / 2;
  return s;
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
    std::vector<double> mass(static_cast<size_t>(range.count()), 0.0);
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    Window win;
    for (int64_t j = 0, n = xc.numel(); j < n; ++j) {
      windowOf(s, xp[j], &win);
      for (int k = 0; k < s.w; ++k) mass[static_cast<size_t>(win.first + k - lo)] += win.p[k];
      if (!sample) {
        yp[j] = s.q * win.mean;
        continue;
      }
      // The first window slot whose cumulative mass reaches the draw (inverse CDF).
      const float draw =
          kernels::uniform01(static_cast<uint64_t>(key), static_cast<uint64_t>(counterBase + j));
      float cdf = 0.0f;
      int k = 0;
      for (; k < s.w - 1; ++k) {
        cdf += win.p[k];
        if (!(cdf < draw)) break;
      }
      yp[j] = s.q * static_cast<float>(win.first + k);
    }
    at::Tensor m = at::empty({range.count()}, xc.options());
    std::copy(mass.begin(), mass.end(), m.data_ptr<float>());
    ctx->save_for_backward({xc, step, kappa});
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
    const at::Tensor gm = grads[1].defined() ? grads[1].contiguous() : at::zeros({range.count()});
    const float* xp = x.data_ptr<float>();
    const float* gyp = gy.data_ptr<float>();
    const float* gmp = gm.data_ptr<float>();
    at::Tensor gx = at::empty(x.sizes(), x.options());
    float* gxp = gx.data_ptr<float>();
    double gq = 0.0, gk = 0.0;
    const float kappa = s.kappa, q = s.q;
    Window win;
    for (int64_t j = 0, n = x.numel(); j < n; ++j) {
      const float u = windowOf(s, xp[j], &win);
      // With d_k = u - a_k: dP_k/du = 2 kappa P_k (a_k - mean), dP_k/dkappa = P_k (D - d_k^2)
      // where D = sum_k P_k d_k^2; Q_d = q mean(u), u = x / q.
      float var = 0.0f, rateU = 0.0f, dBar = 0.0f;
      for (int k = 0; k < s.w; ++k) {
        const float a = static_cast<float>(win.first + k), d = u - a;
        var += win.p[k] * (a - win.mean) * (a - win.mean);
        dBar += win.p[k] * d * d;
        rateU += gmp[win.first + k - range.lo] * 2.0f * kappa * win.p[k] * (a - win.mean);
      }
      const float dMeanDu = 2.0f * kappa * var;
      gxp[j] = gyp[j] * dMeanDu + rateU / q;
      // The masses pass no gradient to q (Note [CDL quantizer]).
      gq += static_cast<double>(gyp[j]) * (win.mean - u * dMeanDu);
      float dMeanDk = 0.0f, rateK = 0.0f;
      for (int k = 0; k < s.w; ++k) {
        const float a = static_cast<float>(win.first + k), d = u - a;
        const float dp = win.p[k] * (dBar - d * d);
        dMeanDk += a * dp;
        rateK += gmp[win.first + k - range.lo] * dp;
      }
      gk += static_cast<double>(gyp[j]) * q * dMeanDk + static_cast<double>(rateK);
    }
    at::Tensor gStep = at::full({1}, stepClamped ? 0.0 : gq, saved[1].options());
    at::Tensor gKappa = at::full({1}, kappaClamped ? 0.0 : gk, saved[2].options());
    return {gx,           gStep,        gKappa,       at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

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
