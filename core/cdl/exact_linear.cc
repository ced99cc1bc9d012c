#include "core/cdl/exact_linear.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/matmul.h>

#include <algorithm>
#include <cmath>

#include "kernels/base/error.h"
#include "kernels/int_linear.h"
#include "kernels/rans.h"

namespace cdl::core {
namespace {

constexpr int64_t kMaxInputs = int64_t{1} << 21;

int ceilLog2(int64_t v) {
  int k = 0;
  while ((int64_t{1} << k) < v) ++k;
  return k;
}

// The fixed-point inputs, transposed to [in, batch], and each row's shift.
struct FixedInputs {
  std::vector<double> xt;
  std::vector<int> shift;
};

FixedInputs toFixed(const float* x, int64_t batch, int64_t in) {
  const int p = 45 - ceilLog2(std::max<int64_t>(in, 1));
  FixedInputs f{std::vector<double>(static_cast<size_t>(batch * in)),
                std::vector<int>(static_cast<size_t>(batch))};
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = x + b * in;
    float m = 0.0f;
    for (int64_t k = 0; k < in; ++k) m = std::max(m, std::fabs(row[k]));
    // m < 2^(ilogb(m) + 1), so |x * 2^s| < 2^p with s = p - 1 - ilogb(m).
    const int s = m > 0.0f ? p - 1 - std::ilogb(m) : 0;
    f.shift[b] = s;
    for (int64_t k = 0; k < in; ++k) {
      f.xt[k * batch + b] = std::nearbyint(std::ldexp(static_cast<double>(row[k]), s));
    }
  }
  return f;
}

// y[b][m] = fp32(s[m * sm + b * sb] * scale) + bias[m].
template <typename Sum>
at::Tensor rescaled(const Sum* s, int64_t sm, int64_t sb, int64_t batch, int64_t out,
                    const double* scale, const at::Tensor& bias, const at::TensorOptions& options) {
  at::Tensor y = at::empty({batch, out}, options);
  float* yp = y.data_ptr<float>();
  const at::Tensor bc = bias.defined() ? bias.contiguous() : bias;
  const float* bp = bc.defined() ? bc.data_ptr<float>() : nullptr;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t m = 0; m < out; ++m) {
      const float v = static_cast<float>(static_cast<double>(s[m * sm + b * sb]) * scale[b]);
      yp[b * out + m] = bp != nullptr ? v + bp[m] : v;
    }
  }
  return y;
}

// Note [Integer linear]: the input's levels when x lies on the grid and the sums fit int32.
bool integerInput(const float* x, int64_t batch, const IndexedWeight& w, const LevelGrid& grid,
                  std::vector<int16_t>& levels) {
  if (!(grid.step > 0.0f) || grid.lo < -32768 || grid.hi > 32767 || batch * w.in == 0) return false;
  levels.resize(static_cast<size_t>(batch * w.in));
  if (!kernels::levelsOnGrid(x, batch * w.in, grid.step, grid.lo, grid.hi, levels.data())) {
    return false;
  }
  const int32_t maxW = std::max(std::abs(w.lo), std::abs(w.lo + (1 << w.bits) - 1));
  return kernels::integerSumFits(w.in, maxW, kernels::maxAbsLevel(levels.data(), batch * w.in));
}

at::Tensor integerLinear(const std::vector<int16_t>& levels, int64_t batch, const IndexedWeight& w,
                         const LevelGrid& grid, const at::Tensor& bias,
                         const at::TensorOptions& options) {
  const std::vector<double> scale(static_cast<size_t>(batch),
                                  static_cast<double>(w.step) * static_cast<double>(grid.step));
  std::vector<int32_t> s(static_cast<size_t>(w.out * batch), 0);
  if (!w.symbols.empty() || w.out * w.in == 0) {
    std::vector<int16_t> wl(w.symbols.size());
    for (size_t i = 0; i < wl.size(); ++i) wl[i] = static_cast<int16_t>(w.symbols[i] + w.lo);
    kernels::integerLinear(levels.data(), batch, wl.data(), w.out, w.in, s.data());
    return rescaled(s.data(), 1, w.out, batch, w.out, scale.data(), bias, options);
  }
  std::vector<int16_t> lt(levels.size());  // [in, batch]
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k = 0; k < w.in; ++k) lt[k * batch + b] = levels[b * w.in + k];
  }
  kernels::ransDecodeChunks(w.coded.data(), w.coded.size(), w.out * w.in, 1 << w.bits,
                            [&](const uint8_t* sym, int64_t first, int64_t count) {
                              kernels::linearPiece(sym, first, count, w.lo, w.in, lt.data(), batch,
                                                   s.data());
                            });
  return rescaled(s.data(), batch, 1, batch, w.out, scale.data(), bias, options);
}

}  // namespace

at::Tensor exactLinear(const at::Tensor& x, const IndexedWeight& w, const at::Tensor& bias,
                       const LevelGrid& grid) {
  CDL_CHECK(x.dim() == 2 && x.size(1) == w.in && x.scalar_type() == at::kFloat,
            "exact linear: input of shape ", x.sizes(), ", expected [batch, ", w.in, "] float");
  CDL_CHECK(w.in <= kMaxInputs, "exact linear: ", w.in, " inputs, at most ", kMaxInputs);
  CDL_CHECK(!bias.defined() || bias.numel() == w.out, "exact linear: bias of ", bias.numel(),
            " entries for ", w.out, " outputs");
  const at::Tensor xc = x.contiguous();
  const int64_t batch = x.size(0);
  std::vector<int16_t> levels;
  if (integerInput(xc.data_ptr<float>(), batch, w, grid, levels)) {
    return integerLinear(levels, batch, w, grid, bias, x.options());
  }
  const FixedInputs f = toFixed(xc.data_ptr<float>(), batch, w.in);
  std::vector<double> s(static_cast<size_t>(w.out * batch), 0.0);
  if (!w.symbols.empty() || w.out * w.in == 0) {
    kernels::linearPiece(w.symbols.data(), 0, w.out * w.in, w.lo, w.in, f.xt.data(), batch,
                         s.data());
  } else {
    kernels::ransDecodeChunks(w.coded.data(), w.coded.size(), w.out * w.in, 1 << w.bits,
                              [&](const uint8_t* sym, int64_t first, int64_t count) {
                                kernels::linearPiece(sym, first, count, w.lo, w.in, f.xt.data(),
                                                     batch, s.data());
                              });
  }
  std::vector<double> scale(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    scale[b] = std::ldexp(static_cast<double>(w.step), -f.shift[b]);
  }
  return rescaled(s.data(), batch, 1, batch, w.out, scale.data(), bias, x.options());
}

}  // namespace cdl::core
