#include "core/cdl/exact_linear.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/cdl/cdl_layers.h"
#include "core/cdl/cdl_quantizer.h"

namespace cdl::core {
namespace {

// A 2-bit weight (levels -2..1) of out x in, and its float values.
IndexedWeight weight(int64_t out, int64_t in, float step) {
  IndexedWeight w{out, in, -2, 2, step, std::vector<uint8_t>(size_t(out * in)), {}};
  for (int64_t i = 0; i < out * in; ++i) w.symbols[i] = static_cast<uint8_t>((i * 7 + i / 5) % 4);
  return w;
}

at::Tensor valuesOf(const IndexedWeight& w) {
  at::Tensor v = at::empty({w.out, w.in});
  for (int64_t i = 0; i < w.out * w.in; ++i) {
    v.data_ptr<float>()[i] = static_cast<float>(w.symbols[i] + w.lo) * w.step;
  }
  return v;
}

// A 4-bit activation quantizer with a step, evaluating to nearest levels.
Quantizer evaluatingActivationQuantizer() {
  QuantizerOptions o;
  o.bits = 4;
  o.isSigned = false;
  o.activation = true;
  Quantizer q(o);
  q->initFromWeight(at::full({4}, 0.9f));
  q->eval();
  return q;
}

// Note [Integer linear]: on an activation quantizer's grid the layer is its integer sums times
// q_w * q_a, rounded once to fp32, whatever order the sum runs in.
TEST(ExactLinear, OnAnActivationGridTheLayerIsTheIntegerSumRescaledOnce) {
  const int64_t batch = 9, out = 6, in = 37;
  const float qa = 0.0731f;
  const IndexedWeight w = weight(out, in, 0.0213f);
  at::manual_seed(4);
  const at::Tensor levels = at::randint(0, 16, {batch, in}).to(at::kFloat);
  const at::Tensor x = levels * qa;
  const at::Tensor bias = at::randn({out});
  const at::Tensor y = exactLinear(x, w, bias, {qa, 0, 15});
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t m = 0; m < out; ++m) {
      int64_t s = 0;
      for (int64_t k = 0; k < in; ++k) {
        s += static_cast<int64_t>(levels[b][k].item<float>()) * (w.symbols[m * in + k] + w.lo);
      }
      const float want =
          static_cast<float>(double(s) * double(w.step) * double(qa)) + bias[m].item<float>();
      ASSERT_EQ(y[b][m].item<float>(), want) << b << ", " << m;
    }
  }
  const at::Tensor ref = at::linear(x, valuesOf(w), bias);
  EXPECT_LT((y - ref).abs().max().item<double>(), 1e-5);
}

// An input off the grid (one element one ulp away, or a NaN) takes the fixed-point sums of
// Note [Exact linear], exactly as a layer given no grid.
TEST(ExactLinear, AnInputOffTheGridTakesTheFixedPointSums) {
  const int64_t batch = 3, out = 5, in = 20;
  const float qa = 0.5f;
  const IndexedWeight w = weight(out, in, 0.3f);
  at::Tensor x = at::randint(0, 16, {batch, in}).to(at::kFloat) * qa;
  x[1][3] = std::nextafter(x[1][3].item<float>(), 100.0f);
  EXPECT_TRUE(at::equal(exactLinear(x, w, {}, {qa, 0, 15}), exactLinear(x, w, {})));
  x[1][3] = 31.0f * qa;  // a level above the range
  EXPECT_TRUE(at::equal(exactLinear(x, w, {}, {qa, 0, 15}), exactLinear(x, w, {})));
  x[1][3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(at::equal(exactLinear(x, w, {}, {qa, 0, 15}).isnan(), exactLinear(x, w, {}).isnan()));
}

// Evaluation to nearest levels runs as one pass; its values are ATen's round, clamp and multiply,
// bit for bit (signs of zero, clamped outliers and NaN included), counting or not.
TEST(ExactLinear, TheQuantizersNearestLevelPassEqualsAtensFormula) {
  Quantizer q = evaluatingActivationQuantizer();
  at::NoGradGuard noGrad;
  at::Tensor x = at::randn({3, 500}) * 2.0;
  x[0][0] = std::numeric_limits<float>::quiet_NaN();
  x[0][1] = -std::numeric_limits<float>::infinity();
  x[0][2] = 1e30f;
  const at::Tensor step = at::full({}, q->stepValue(), at::kFloat);
  const at::Tensor want = at::round(x / step).clamp(0, 15) * step;
  const at::Tensor y = q->forward(x);
  EXPECT_TRUE(at::equal(y.isnan(), want.isnan()));
  EXPECT_TRUE(at::equal(y.nan_to_num(), want.nan_to_num()));
  EXPECT_TRUE(at::equal(y.signbit(), want.signbit()));
  q->setCounting(true);
  EXPECT_TRUE(at::equal(q->forward(x).nan_to_num(), want.nan_to_num()));
}

// The CNN's pooled activations in one pass: the values of ATen's max pooling then the quantizer,
// bit for bit (ties of +0 and -0, NaN, odd sizes), and the two-pass path while training.
TEST(PooledQuantized, OnePassEqualsPoolingThenQuantizing) {
  Quantizer q = evaluatingActivationQuantizer();
  at::NoGradGuard noGrad;
  for (auto [h, w] : {std::pair{6, 8}, std::pair{7, 5}, std::pair{2, 2}}) {
    at::Tensor x = at::randn({3, 2, h, w}).relu();
    x[0][0][0][1] = -0.0f;
    x[0][1][1][0] = std::numeric_limits<float>::quiet_NaN();
    x[1][0][0][0] = 1e30f;
    const at::Tensor want = q->forward(at::max_pool2d(x, {2, 2}));
    const at::Tensor y = pooledQuantized(q, x);
    ASSERT_EQ(y.sizes(), want.sizes());
    EXPECT_TRUE(at::equal(y.isnan(), want.isnan())) << h << "x" << w;
    EXPECT_TRUE(at::equal(y.nan_to_num(), want.nan_to_num())) << h << "x" << w;
    EXPECT_TRUE(at::equal(y.signbit(), want.signbit())) << h << "x" << w;
  }
  const at::Tensor x = at::rand({2, 3, 4, 4});
  EXPECT_TRUE(at::equal(pooledQuantized(Quantizer(nullptr), x), at::max_pool2d(x, {2, 2})));
}

}  // namespace
}  // namespace cdl::core
