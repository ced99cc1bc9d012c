#include "core/cdl/cdl_quantizer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/cdl/cdl_kernel.h"
#include "core/cdl/cdl_layers.h"
#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

at::Tensor scalar(double v, bool grad = false) {
  return at::full({1}, v, at::kDouble).set_requires_grad(grad);
}

// Q_d over every level of the range, in float64, straight from the definition.
at::Tensor softAllLevels(const at::Tensor& x, double q, double kappa, LevelRange r) {
  const at::Tensor levels = at::arange(r.lo, r.hi + 1, at::kDouble);
  const at::Tensor d = (x / q).unsqueeze(-1) - levels;
  const at::Tensor p = at::softmax(-kappa * d * d, -1);
  return q * (p * levels).sum(-1);
}

TEST(CdlQuantizer, LevelRangesAreSignedForWeightsAndUnsignedForActivations) {
  EXPECT_EQ(levelRange(4, true).lo, -8);
  EXPECT_EQ(levelRange(4, true).hi, 7);
  EXPECT_EQ(levelRange(4, false).lo, 0);
  EXPECT_EQ(levelRange(4, false).hi, 15);
  EXPECT_EQ(levelRange(8, true).count(), 256);
  EXPECT_THROW(levelRange(9, true), Error);
  EXPECT_THROW(levelRange(0, false), Error);
}

TEST(CdlQuantizer, WindowedSoftQuantizerEqualsAllLevelsWhereFarLevelsHaveNoMass) {
  const LevelRange r = levelRange(4, true);
  const at::Tensor x = at::linspace(-1.0, 1.0, 101, at::kDouble);
  for (double kappa : {1.0, 2.0, 8.0}) {
    const SoftQuantization s = softQuantize(x, scalar(0.1), scalar(kappa), r, 7);
    const at::Tensor all = softAllLevels(x, 0.1, kappa, r);
    EXPECT_LT((s.soft - all).abs().max().item<double>(), 1e-6) << "kappa " << kappa;
  }
}

// For activations (unsigned levels, x >= 0) and weights (signed levels, x of both signs).
class SoftQuantizerGradient : public ::testing::TestWithParam<bool> {};

TEST_P(SoftQuantizerGradient, BackwardEqualsFiniteDifferences) {
  const bool isSigned = GetParam();
  const LevelRange r = levelRange(3, isSigned);
  for (double kappa : {0.5, 2.0, 6.0}) {
    for (int window : {3, 5}) {
      // Points away from the half-integers of x / q, where the window moves (and the windowed
      // Q_d jumps by the mass of the levels it trades, a difference quotient's blind spot).
      at::Tensor x = (at::arange(23, at::kDouble) * 0.0291 + (isSigned ? -0.3363 : 0.0137))
                         .set_requires_grad(true);
      at::Tensor q = scalar(0.1, true);
      const SoftQuantization s = softQuantize(x, q, scalar(kappa), r, window);
      s.soft.sum().backward();
      const double h = 1e-6;
      for (int64_t j = 0; j < x.numel(); ++j) {
        const double xj = x[j].item<double>();
        auto f = [&](double v) {
          return softQuantize(at::full({1}, v, at::kDouble), scalar(0.1), scalar(kappa), r, window)
              .soft.item<double>();
        };
        const double fd = (f(xj + h) - f(xj - h)) / (2 * h);
        EXPECT_NEAR(x.grad()[j].item<double>(), fd, 1e-5) << "kappa " << kappa << " x " << xj;
      }
      // dQ_d/dx = 2 alpha Var_P[a], alpha = kappa / q^2.
      const at::Tensor a = s.levels * 0.1;
      const at::Tensor mean = (s.probs * a).sum(-1, true);
      const at::Tensor var = (s.probs * (a - mean) * (a - mean)).sum(-1);
      const at::Tensor want = 2 * kappa / 0.01 * var;
      EXPECT_LT((x.grad() - want.detach()).abs().max().item<double>(), 1e-8);
      auto fq = [&](double v) {
        return softQuantize(x.detach(), scalar(v), scalar(kappa), r, window)
            .soft.sum()
            .item<double>();
      };
      EXPECT_NEAR(q.grad().item<double>(), (fq(0.1 + h) - fq(0.1 - h)) / (2 * h), 1e-4);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(WeightsAndActivations, SoftQuantizerGradient, ::testing::Bool());

TEST(CdlQuantizer, SamplesAreUnbiasedForTheSoftQuantizerAndReproducible) {
  const LevelRange r = levelRange(4, true);
  const at::Tensor x = at::full({20000}, 0.137, at::kFloat);
  const SoftQuantization s = softQuantize(x, at::full({1}, 0.1f), at::full({1}, 1.0f), r, 5);
  const at::Tensor a = sampleLevels(s, 42) * 0.1;
  const double soft = s.soft[0].item<double>();
  // Bernoulli-like spread of one level at most: the mean of 20000 draws is within 5 sigma.
  const double sigma = 0.1 / std::sqrt(20000.0);
  EXPECT_NEAR(a.mean().item<double>(), soft, 5 * sigma);
  EXPECT_TRUE(at::equal(sampleLevels(s, 42), sampleLevels(s, 42)));
  EXPECT_FALSE(at::equal(sampleLevels(s, 42), sampleLevels(s, 43)));
}

TEST(CdlQuantizer, TheRateIsTheEntropyOfTheMarginalPmf) {
  const LevelRange r = levelRange(2, true);
  // Far from every boundary at a large kappa: all mass on the nearest level.
  const at::Tensor x = at::tensor({-0.2, -0.1, 0.0, 0.1}, at::kDouble);
  const SoftQuantization s = softQuantize(x, scalar(0.1), scalar(20.0), r, 3);
  const at::Tensor mass = levelMass(s, r);
  EXPECT_NEAR(mass.sum().item<double>(), 4.0, 1e-9);
  EXPECT_NEAR(entropyBits(mass, 4.0).item<double>(), 2.0, 1e-3);
  const at::Tensor same = at::zeros({4}, at::kDouble);
  const SoftQuantization t = softQuantize(same, scalar(0.1), scalar(20.0), r, 3);
  EXPECT_NEAR(entropyBits(levelMass(t, r), 4.0).item<double>(), 0.0, 1e-3);
}

// The fused kernel against the reference functions: values, masses and every gradient.
// Every window width (up to 9 levels as vector code, Note [Vector windows], wider ones by the
// scalar formula; windows at the range's edges too), at the smallest, a middle and the largest
// kappa; samples are compared at the middle one (at the extremes a draw within float rounding of
// a cumulative mass could fall either way).
TEST(CdlQuantizer, TheFusedKernelEqualsTheReferenceAndItsGradients) {
  at::manual_seed(11);
  for (bool isSigned : {true, false}) {
    const LevelRange r = levelRange(isSigned ? 4 : 3, isSigned);
    for (int window : {1, 3, 5, 7, 9, 11}) {
      for (float kappa : {0.05f, 1.5f, 20.0f}) {
        // Beyond the range too, where the window sits at its edge.
        const at::Tensor x0 = isSigned ? at::randn({300}) * 0.4 : at::rand({300}) * 0.9 - 0.05;
        const at::Tensor gy = at::randn({300});
        const at::Tensor gm = at::randn({r.count()});
        auto run = [&](bool fused, bool sample) {
          at::Tensor x = x0.clone().set_requires_grad(true);
          at::Tensor q = at::full({1}, 0.1f).set_requires_grad(true);
          at::Tensor k = at::full({1}, kappa).set_requires_grad(true);
          at::Tensor y, mass;
          if (fused) {
            const FusedQuantization f = fusedQuantize(x, q, k, r, window, sample, 9);
            y = f.y;
            mass = f.mass;
          } else {
            const SoftQuantization s = softQuantize(x, sample ? q.detach() : q, k, r, window);
            y = s.soft;
            if (sample) {  // Note [Step from the sample]: q's gradient is the sample's, as LSQ's
              const at::Tensor i = sampleLevels(s, 9), u = x.detach() / q.detach();
              const at::Tensor inside = (u >= r.lo).logical_and(u <= r.hi);
              y = s.soft + (i * q.detach() - s.soft).detach() +
                  (q - q.detach()) * at::where(inside, i - u, i);
            }
            mass = levelMass(softQuantize(x, q.detach(), k, r, window), r);  // no gradient to q
          }
          ((y * gy).sum() + (mass * gm).sum()).backward();
          return std::vector<at::Tensor>{y.detach(), mass.detach(), x.grad(), q.grad(), k.grad()};
        };
        for (bool sample : {false, true}) {
          if (sample && kappa != 1.5f) continue;
          const auto want = run(false, sample), got = run(true, sample);
          const char* names[] = {"y", "mass", "dx", "dq", "dkappa"};
          for (size_t i = 0; i < want.size(); ++i) {
            const double scale = std::max(1.0, want[i].abs().max().item<double>());
            EXPECT_LT((got[i] - want[i]).abs().max().item<double>(), 2e-4 * scale)
                << names[i] << " window " << window << " kappa " << kappa
                << (sample ? " sampled" : " soft") << (isSigned ? " signed" : " unsigned");
          }
        }
      }
    }
  }
}

// Without the masses in the loss and with kappa not trained, the backward pass skips their
// terms: dx and dq as the reference gives them.
TEST(CdlQuantizer, TheFusedKernelWithoutRateOrTrainedKappaGivesTheSameGradients) {
  at::manual_seed(14);
  const LevelRange r = levelRange(4, true);
  const at::Tensor x0 = at::randn({3000}) * 0.4;
  const at::Tensor gy = at::randn({3000});
  auto run = [&](bool fused) {
    at::Tensor x = x0.clone().set_requires_grad(true);
    at::Tensor q = at::full({1}, 0.1f).set_requires_grad(true);
    const at::Tensor k = at::full({1}, 1.5f);
    const at::Tensor y =
        fused ? fusedQuantize(x, q, k, r, 5, false, 9).y : softQuantize(x, q, k, r, 5).soft;
    (y * gy).sum().backward();
    return std::vector<at::Tensor>{x.grad(), q.grad()};
  };
  const auto want = run(false), got = run(true);
  EXPECT_LT((got[0] - want[0]).abs().max().item<double>(), 2e-4);
  EXPECT_LT((got[1] - want[1]).abs().max().item<double>(),
            2e-4 * std::max(1.0, want[1].abs().max().item<double>()));
}

// The kernel runs in blocks in parallel and sums them in block order: the same values, masses
// and gradients, bit for bit, at any thread count.
TEST(CdlQuantizer, TheFusedKernelGivesTheSameBitsAtAnyThreadCount) {
  at::manual_seed(12);
  const LevelRange r = levelRange(6, true);
  const at::Tensor x0 = at::randn({70000}) * 0.5;  // several blocks and a partial one
  const at::Tensor gy = at::randn({70000});
  const at::Tensor gm = at::randn({r.count()});
  const int threads = at::get_num_threads();
  auto run = [&](int n) {
    at::set_num_threads(n);
    at::Tensor x = x0.clone().set_requires_grad(true);
    at::Tensor q = at::full({1}, 0.05f).set_requires_grad(true);
    at::Tensor k = at::full({1}, 2.0f).set_requires_grad(true);
    const FusedQuantization f = fusedQuantize(x, q, k, r, 5, true, 4, 100);
    ((f.y * gy).sum() + (f.mass * gm).sum()).backward();
    return std::vector<at::Tensor>{f.y.detach(), f.mass.detach(), x.grad(), q.grad(), k.grad()};
  };
  const auto one = run(1), two = run(2), three = run(3);
  at::set_num_threads(threads);
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_TRUE(at::equal(one[i], two[i])) << "output " << i << " at 2 threads";
    EXPECT_TRUE(at::equal(one[i], three[i])) << "output " << i << " at 3 threads";
  }
  EXPECT_NEAR(one[1].sum().item<double>(), 70000.0, 0.5);
}

// LSQ's quantizer: nearest levels, straight-through gradients, q's gradient LSQ's, the level
// counts as masses.
TEST(CdlQuantizer, LsqRoundsToTheNearestLevelWithLsqGradients) {
  at::manual_seed(13);
  const LevelRange r = levelRange(3, true);  // -4..3
  const at::Tensor x0 = at::randn({5000}) * 0.3;
  const at::Tensor gy = at::randn({5000});
  at::Tensor x = x0.clone().set_requires_grad(true);
  at::Tensor q = at::full({1}, 0.1f).set_requires_grad(true);
  const FusedQuantization f = lsqQuantize(x, q, r);
  (f.y * gy).sum().backward();
  const at::Tensor u = x0 / 0.1f;
  const at::Tensor levels = at::round(u).clamp(r.lo, r.hi);
  EXPECT_LT((f.y.detach() - levels * 0.1f).abs().max().item<double>(), 1e-6);
  const at::Tensor inside = (u >= r.lo).logical_and(u <= r.hi).to(at::kFloat);
  EXPECT_TRUE(at::equal(x.grad(), gy * inside));
  const at::Tensor dq =
      at::where(inside.to(at::kBool), at::round(u) - u,
                at::where(u < r.lo, at::full_like(u, r.lo), at::full_like(u, r.hi)));
  EXPECT_NEAR(q.grad().item<double>(), (gy * dq).sum().item<double>(), 1e-3);
  EXPECT_GT((1 - inside).sum().item<double>(), 10);  // some fell outside
  for (int64_t i = r.lo; i <= r.hi; ++i) {
    EXPECT_EQ(f.mass[i - r.lo].item<double>(), levels.eq(i).sum().item<double>()) << "level " << i;
  }
  EXPECT_FALSE(f.mass.requires_grad());
}

TEST(CdlQuantizer, TheModuleSamplesReproduciblyPerStepAndQuantizesToTheNearestLevelInEval) {
  QuantizerOptions o;
  o.bits = 4;
  Quantizer q(o);
  q->initFromWeight(at::full({4}, 0.5f));
  auto ctx = std::make_shared<CdlContext>();
  ctx->seed = 3;
  q->attach(ctx, 0);
  const at::Tensor x = at::randn({2000}) * 0.3;
  auto sample = [&](uint64_t step) {
    ctx->step = step;
    return q->forward(x).detach();
  };
  EXPECT_TRUE(at::equal(sample(5), sample(5)));
  EXPECT_FALSE(at::equal(sample(5), sample(6)));
  EXPECT_TRUE(q->rate().defined());
  EXPECT_GT(q->rate().item<double>(), 0.0);
  q->eval();
  const double step = q->stepValue();
  const at::Tensor nearest = at::round(x / step).clamp(-8, 7) * step;
  EXPECT_LT((q->forward(x) - nearest).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(q->symbols(x).size(), 2000u);
}

// Note [Step from the sample]: a CDL quantizer's log_step takes the sample's gradient,
// sum gy (i - u) inside the range and gy i outside, at LSQ's scale g / q on log q (so g on q's
// own scale: log_step's gradient is g times the sum); R-CDL's is Q_d's.
TEST(CdlQuantizer, TheModuleLearnsCdlsStepFromTheSample) {
  at::manual_seed(15);
  const at::Tensor x = at::randn({4000}) * 0.3;
  const at::Tensor gy = at::randn({4000});
  auto logStepGrad = [&](CdlMode mode, at::Tensor* y) {
    QuantizerOptions o;
    o.bits = 3;
    Quantizer q(o);
    q->initFromWeight(x);
    auto ctx = std::make_shared<CdlContext>();
    ctx->mode = mode;
    ctx->seed = 3;
    ctx->step = 1;
    q->attach(ctx, 0);
    *y = q->forward(x);
    (*y * gy).sum().backward();
    *y = y->detach() / q->stepValue();
    return std::make_pair(q->named_parameters()["log_step"].grad().item<double>(), q->stepValue());
  };
  at::Tensor i;
  const auto [cdlGrad, step] = logStepGrad(CdlMode::kCdl, &i);
  const at::Tensor u = x / step;
  const at::Tensor inside = (u >= -4).logical_and(u <= 3);
  const double g = 1.0 / std::sqrt(4000.0 * 3.0);
  const double want = g * (gy * at::where(inside, i - u, i)).sum().item<double>();
  EXPECT_NEAR(cdlGrad, want, 1e-4 * std::max(1.0, std::abs(want)));
  EXPECT_GT((1 - inside.to(at::kFloat)).sum().item<double>(), 10);  // some fell outside
  at::Tensor soft;
  const double rcdlGrad = logStepGrad(CdlMode::kRcdl, &soft).first;
  EXPECT_GT(std::abs(rcdlGrad - want), 1e-3 * std::max(1.0, std::abs(want)));
}

}  // namespace
}  // namespace cdl::core
