#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/reduce/scheme.h"
#include "comm/reduce/scheme_spec.h"

namespace cdl::comm {

// What one candidate costs one tensor (rows x cols, g): ||g - C(g)||_2 and the bytes one rank of
// `ranks` sends. Not valid when the candidate does not apply to the tensor, unless it is the
// layer's default (its configured scheme), which is then costed as what really happens: PowerSGD
// falls back to a plain fp32 allreduce.
struct CandidateCost {
  bool valid = true;
  double error = 0.0;
  int64_t bytes = 0;
};

// Note [Scheme registry]
// Every reduction scheme is one SchemeType: what the rate planner and the Reducer need of it
// before and beside its instances (a ReductionScheme reduces one bucket): the families it serves
// and their candidate grids (Note [Adaptive rates]), whether a spec applies to a tensor, what a
// spec costs a tensor's gradient (measured for real), how a tensor's state moves to it from
// another scheme (Note [Scheme changes]) and the factory of its instances. A scheme lives in one
// file (scheme_payload.cc, scheme_powersgd.cc) with its type, plus one line of schemeTypes().
class SchemeType {
 public:
  virtual ~SchemeType() = default;

  virtual SchemeId id() const = 0;
  // The families of comm.adaptive.families it serves ("qsgd", "topk"; "powersgd").
  virtual std::vector<std::string> families() const = 0;
  // The family of one of its specs.
  virtual std::string family(const SchemeSpec& spec) const = 0;
  // The candidate grid of one of its families, with the uniform scheme's settings where they apply.
  virtual std::vector<SchemeSpec> candidates(const std::string& family,
                                             const SchemeSpec& uniform) const = 0;
  // Whether spec compresses a rows x cols tensor.
  virtual bool applies(const SchemeSpec& spec, int64_t rows, int64_t cols) const = 0;
  // spec on the gradient g (rows x cols) among `ranks`, as the Reducer would apply it (also where
  // it does not apply: what happens then).
  virtual CandidateCost measure(const float* g, int64_t rows, int64_t cols, const SchemeSpec& spec,
                                int ranks) const = 0;
  // A tensor's state (as saveState wrote it under `from`) adapted to `to`, one of its specs;
  // cols is the tensor's column count and seed the one its PowerSGD factors are drawn from.
  virtual void adoptState(const SchemeSpec& from, const SchemeSpec& to, int64_t cols, uint64_t seed,
                          TensorState& state) const = 0;
  virtual std::unique_ptr<ReductionScheme> make(const SchemeSpec& spec,
                                                std::vector<BucketTensor> tensors,
                                                const SchemeOptions& options) const = 0;
};

// Every scheme type, and the one of an id.
const std::vector<const SchemeType*>& schemeTypes();
const SchemeType& schemeType(SchemeId id);

// The types' own files.
const SchemeType& payloadSchemeType();
const SchemeType& powerSgdSchemeType();

// The wire bytes per rank of a collective moving `payload` bytes per rank: reduce-scatter plus
// allgather (each 1 - 1/W of it) when summable, else an allgather to the W - 1 peers.
int64_t collectiveWireBytes(double payload, int ranks, bool summable);
// ||a - b||_2 over n elements.
double l2Distance(const float* a, const float* b, int64_t n);

// A saved tensor state's field, and the check that it holds no other fields; errors name the
// tensor (the saved state of another scheme, say).
const std::vector<float>& stateField(const SchemeState& in, const std::string& tensor,
                                     const std::string& name);
void requireStateFields(const SchemeState& in, const std::string& tensor,
                        std::initializer_list<const char*> names);

}  // namespace cdl::comm
