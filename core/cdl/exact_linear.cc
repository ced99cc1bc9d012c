#include "core/cdl/exact_linear.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/matmul.h>

#include <algorithm>
#include <cmath>

#include "kernels/base/error.h"
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

// S[m][b] += level * X over a piece of the weight's symbols starting at flat index `first`.
void accumulate(const uint8_t* sym, int64_t first, int64_t count, const IndexedWeight& w,
                const FixedInputs& f, int64_t batch, double* s) {
  for (int64_t i = 0; i < count; ++i) {
    const double level = static_cast<double>(static_cast<int>(sym[i]) + w.lo);
    if (level == 0.0) continue;
    const int64_t pos = first + i;
    const double* xk = f.xt.data() + (pos % w.in) * batch;
    double* sm = s + (pos / w.in) * batch;
    for (int64_t b = 0; b < batch; ++b) sm[b] += level * xk[b];
  }
}

}  // namespace

at::Tensor exactLinear(const at::Tensor& x, const IndexedWeight& w, const at::Tensor& bias) {
  CDL_CHECK(x.dim() == 2 && x.size(1) == w.in && x.scalar_type() == at::kFloat,
            "exact linear: input of shape ", x.sizes(), ", expected [batch, ", w.in, "] float");
  CDL_CHECK(w.in <= kMaxInputs, "exact linear: ", w.in, " inputs, at most ", kMaxInputs);
  CDL_CHECK(!bias.defined() || bias.numel() == w.out, "exact linear: bias of ", bias.numel(),
            " entries for ", w.out, " outputs");
  const at::Tensor xc = x.contiguous();
  const int64_t batch = x.size(0);
  const FixedInputs f = toFixed(xc.data_ptr<float>(), batch, w.in);
  std::vector<double> s(static_cast<size_t>(w.out * batch), 0.0);
  if (!w.symbols.empty() || w.out * w.in == 0) {
    accumulate(w.symbols.data(), 0, w.out * w.in, w, f, batch, s.data());
  } else {
    kernels::ransDecodeChunks(w.coded.data(), w.coded.size(), w.out * w.in, 1 << w.bits,
                              [&](const uint8_t* sym, int64_t first, int64_t count) {
                                accumulate(sym, first, count, w, f, batch, s.data());
                              });
  }
  at::Tensor y = at::empty({batch, w.out}, x.options());
  float* yp = y.data_ptr<float>();
  const at::Tensor bc = bias.defined() ? bias.contiguous() : bias;
  const float* bp = bc.defined() ? bc.data_ptr<float>() : nullptr;
  for (int64_t b = 0; b < batch; ++b) {
    const double scale = std::ldexp(static_cast<double>(w.step), -f.shift[b]);
    for (int64_t m = 0; m < w.out; ++m) {
      const float v = static_cast<float>(s[m * batch + b] * scale);
      yp[b * w.out + m] = bp != nullptr ? v + bp[m] : v;
    }
  }
  return y;
}

}  // namespace cdl::core
