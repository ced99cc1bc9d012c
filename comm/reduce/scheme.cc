#include "comm/reduce/scheme.h"

#include <algorithm>
#include <cmath>

#include "comm/reduce/scheme_type.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::comm {

const std::vector<float>& stateField(const SchemeState& in, const std::string& tensor,
                                     const std::string& name) {
  auto t = in.find(tensor);
  CDL_CHECK(t != in.end(), "reducer: the saved state lacks tensor '", tensor, "'");
  auto f = t->second.find(name);
  CDL_CHECK(f != t->second.end(), "reducer: the saved state of '", tensor, "' lacks its ", name);
  return f->second;
}

void requireStateFields(const SchemeState& in, const std::string& tensor,
                        std::initializer_list<const char*> names) {
  for (const auto& [name, values] : in.at(tensor)) {
    CDL_CHECK(std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; }),
              "reducer: the saved state of '", tensor, "' has an unknown field '", name,
              "' (saved by another reduction scheme?)");
  }
}

const std::vector<const SchemeType*>& schemeTypes() {
  static const std::vector<const SchemeType*> types = {&payloadSchemeType(), &powerSgdSchemeType()};
  return types;
}

const SchemeType& schemeType(SchemeId id) {
  for (const SchemeType* t : schemeTypes()) {
    if (t->id() == id) return *t;
  }
  CDL_THROW("unknown reduction scheme id ", static_cast<int>(id));
}

int64_t collectiveWireBytes(double payload, int ranks, bool summable) {
  const double w = std::max(ranks, 2);
  return static_cast<int64_t>(
      std::llround(summable ? 2.0 * (w - 1) / w * payload : (w - 1) * payload));
}

double l2Distance(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return std::sqrt(s);
}

uint64_t powerSgdSeed(uint64_t seed, int index) {
  return kernels::roundingKey(seed, 0, static_cast<uint64_t>(index));
}

void adaptSchemeState(const SchemeSpec& from, const SchemeSpec& to, int64_t cols, uint64_t seed,
                      TensorState& state) {
  schemeType(to.scheme).adoptState(from, to, cols, seed, state);
}

std::unique_ptr<ReductionScheme> makeScheme(const SchemeSpec& spec,
                                            std::vector<BucketTensor> tensors,
                                            const SchemeOptions& options) {
  return schemeType(spec.scheme).make(spec, std::move(tensors), options);
}

}  // namespace cdl::comm
