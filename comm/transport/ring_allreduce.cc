#include "comm/transport/ring_allreduce.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::comm {

bool useRing(const CollectiveOptions& options, int size, int64_t n) {
  const int64_t least = options.ringMinFloats < 0 ? kDefaultRingMinFloats : options.ringMinFloats;
  return size > 2 && n >= least && n / size < INT_MAX - 1;
}

int64_t ringCrossover(int64_t n1, int64_t n2, double transport1, double transport2, double ring1,
                      double ring2) {
  CDL_CHECK(n2 > n1 && n1 > 0, "ringCrossover: sizes ", n1, " and ", n2);
  const double span = static_cast<double>(n2 - n1);
  const double bt = (transport2 - transport1) / span, br = (ring2 - ring1) / span;
  const double at = transport1 - bt * n1, ar = ring1 - br * n1;
  // A ring line as steep or steeper: the ring wins at every size up to n2 when it wins at n2 (and,
  // bandwidth-optimal, is not taken to lose beyond the sizes measured), else at none from n2 on.
  if (br >= bt) return ring2 < transport2 ? 1 : INT64_MAX;
  double cross = (ar - at) / (bt - br);
  // Below n1 nothing was measured. A transport whose line would cost nothing at some size there
  // (its time grew faster than in proportion between the probes: it changed protocol) is taken
  // to cost in proportion to the size below n1, its line through the origin and (n1, t1).
  if (cross < static_cast<double>(n1) && at < 0.0) {
    const double proportional = transport1 / static_cast<double>(n1);
    cross = proportional > br ? ar / (proportional - br) : 0.0;
  }
  if (cross <= 1.0) return 1;
  if (cross >= 9e18) return INT64_MAX;
  return static_cast<int64_t>(std::ceil(cross));
}

std::shared_ptr<Work> ringAllreduce(Communicator& comm, float* data, int64_t n, uint64_t tag,
                                    const std::string& what) {
  CDL_CHECK(comm.memory() == MemoryKind::kHost, what, ": the ring adds on the host; this ",
            "communicator takes device memory");
  CDL_CHECK(n >= 0 && (data != nullptr || n == 0), what, ": bad buffer (n = ", n, ")");
  const int p = comm.size(), me = comm.rank();
  const int right = (me + 1) % p, left = (me + p - 1) % p;
  auto begin = [n, p](int c) { return n * c / p; };  // chunk c is [begin(c), begin(c + 1))
  auto chunk = [p](int c) { return ((c % p) + p) % p; };
  auto bytes = [begin](int c) { return static_cast<size_t>(begin(c + 1) - begin(c)) * 4; };
  auto tmp = std::make_shared<std::vector<float>>(static_cast<size_t>(n / p + 1));
  Communicator* c = &comm;
  // One step: send chunk sendC to the right, receive chunk recvC from the left into recvTo.
  auto exchange = [=](int sendC, int recvC, float* recvTo) {
    return std::vector<std::shared_ptr<Work>>{
        c->sendRecv(data + begin(sendC), bytes(sendC), right, recvTo, bytes(recvC), left, tag)};
  };
  auto addReceived = [=](int ch) {
    float* dst = data + begin(ch);
    const float* src = tmp->data();
    const int64_t len = begin(ch + 1) - begin(ch);
    for (int64_t i = 0; i < len; ++i) dst[i] += src[i];
  };
  std::vector<PhasedWork::Phase> phases;
  for (int s = 0; s < p - 1; ++s) {  // reduce-scatter
    phases.push_back([=] {
      if (s > 0) addReceived(chunk(me - s));
      return exchange(chunk(me - s), chunk(me - s - 1), tmp->data());
    });
  }
  for (int s = 0; s < p - 1; ++s) {  // allgather: this rank finished chunk me + 1
    phases.push_back([=] {
      if (s == 0) addReceived(chunk(me - (p - 1)));
      return exchange(chunk(me + 1 - s), chunk(me - s), data + begin(chunk(me - s)));
    });
  }
  return std::make_shared<PhasedWork>(what, std::move(phases));
}

}  // namespace cdl::comm
